r"""CAM (exact for a global-average-pool + linear head) and Grad-CAM heatmaps.

  python experiments/cam.py --image=$ATLASJAX_DATA/imagenet-sample/n01443537_goldfish.jpg \
      --layers=mixed5b,mixed4d,mixed3b --out=/tmp/cam

  python experiments/cam.py --model=efficientnet_lite0 --image=PHOTO --out=/tmp/cam

Writes cam.png (photo | CAM at the model's cam_layer, e.g. mixed5b | Grad-CAM
at each --layers entry) and cam.json (class, probability, and the CAM's mean +
bias next to the logit).
"""

import json

from absl import flags
import jax.numpy as jnp

import cli
from atlasjax import images as images_lib
from atlasjax import labels as labels_lib
from atlasjax import plotting
from atlasjax.classic import attribution

_IMAGE = flags.DEFINE_string("image", None, "Photo to explain.", required=True)
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_TARGET = flags.DEFINE_string(
    "target", None, "Class (name, wnid or index); default: the top-1.")
_LAYERS = flags.DEFINE_list(
    "layers", None, "Layers for Grad-CAM (default: the model's CAM layer and "
    "its default atlas layer, e.g. mixed5b,mixed4c).")
_CMAP = flags.DEFINE_string("cmap", plotting.DEFAULT_CMAP, "Colormap.")


def main(argv):
  del argv
  model, params = cli.load_model()
  layers = model.check_layers(_LAYERS.value or dict.fromkeys(
      [model.cam_layer, model.default_layer]))
  cli.image_file(_IMAGE.value)
  out_dir = cli.output_dir(_OUT.value)
  labels = labels_lib.load(cli.DATA.value)
  image = jnp.asarray(images_lib.load_for_model(_IMAGE.value,
                                                model.input_size))[None]
  out = model.apply(params, image, layers=("logits", "probs"))
  target = (labels.lookup(_TARGET.value) if _TARGET.value
            else int(jnp.argmax(out["probs"][0])))
  classes = jnp.array([target])
  cam = attribution.model_cam(model, params, image, classes)
  panels = [image[0], plotting.heatmap_overlay(
      image[0], attribution.normalize_map(cam)[0], cmap=_CMAP.value)]
  for layer in layers:
    heat = attribution.grad_cam(model, params, image, classes, layer)
    panels.append(plotting.heatmap_overlay(
        image[0], attribution.normalize_map(heat)[0], cmap=_CMAP.value))
  plotting.save_png(plotting.hstack(panels), out_dir / "cam.png")
  bias = model.classifier_params(params)["bias"][target]
  info = {"image": _IMAGE.value, "class": target,
          "name": labels.short_name(target),
          "prob": float(out["probs"][0, target]),
          "logit": float(out["logits"][0, target]),
          "cam_mean_plus_bias": float(cam[0].mean() + bias),
          "panels": ["photo", f"cam:{model.cam_layer}"] + [
              f"grad_cam:{l}" for l in layers]}
  (out_dir / "cam.json").write_text(json.dumps(info, indent=2))
  print(json.dumps(info))


if __name__ == "__main__":
  cli.run(main)
