r"""CAM (exact for GoogLeNet) and Grad-CAM heatmaps over a photo.

  python experiments/cam.py --image=$ATLASJAX_DATA/imagenet-sample/n01443537_goldfish.jpg \
      --layers=mixed5b,mixed4d,mixed3b --out=/tmp/cam

Writes cam.png (photo | CAM at mixed5b | Grad-CAM at each --layers entry) and
cam.json (class, probability, and the CAM's mean + bias next to the logit).
"""

import json
import os

from absl import app
from absl import flags
import jax.numpy as jnp

from atlasjax import images as images_lib
from atlasjax import labels as labels_lib
from atlasjax import models
from atlasjax import plotting
from atlasjax.classic import attribution

_IMAGE = flags.DEFINE_string("image", None, "Photo to explain.", required=True)
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_TARGET = flags.DEFINE_string(
    "target", None, "Class (name, wnid or index); default: the top-1.")
_LAYERS = flags.DEFINE_list("layers", ["mixed5b", "mixed4d"],
                            "Layers for Grad-CAM.")
_CMAP = flags.DEFINE_string("cmap", plotting.DEFAULT_CMAP, "Colormap.")
_DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA).")


def main(argv):
  del argv
  model, params = models.load(data=_DATA.value)
  labels = labels_lib.load(_DATA.value)
  image = jnp.asarray(images_lib.load_eval(_IMAGE.value))[None]
  out = model.apply(params, image, layers=("logits", "probs"))
  target = (labels.lookup(_TARGET.value) if _TARGET.value
            else int(jnp.argmax(out["probs"][0])))
  classes = jnp.array([target])
  cam = attribution.model_cam(model, params, image, classes)
  panels = [image[0], plotting.heatmap_overlay(
      image[0], attribution.normalize_map(cam)[0], cmap=_CMAP.value)]
  for layer in _LAYERS.value:
    heat = attribution.grad_cam(model, params, image, classes, layer)
    panels.append(plotting.heatmap_overlay(
        image[0], attribution.normalize_map(heat)[0], cmap=_CMAP.value))
  os.makedirs(_OUT.value, exist_ok=True)
  plotting.save_png(plotting.hstack(panels), os.path.join(_OUT.value, "cam.png"))
  bias = model.classifier_params(params)["bias"][target]
  info = {"image": _IMAGE.value, "class": target,
          "name": labels.short_name(target),
          "prob": float(out["probs"][0, target]),
          "logit": float(out["logits"][0, target]),
          "cam_mean_plus_bias": float(cam[0].mean() + bias),
          "panels": ["photo", "cam:mixed5b"] + [f"grad_cam:{l}"
                                                for l in _LAYERS.value]}
  with open(os.path.join(_OUT.value, "cam.json"), "w") as f:
    json.dump(info, f, indent=2)
  print(json.dumps(info))


if __name__ == "__main__":
  app.run(main)
