r"""CAM (exact for a global-average-pool + linear head) and Grad-CAM heatmaps.

  python experiments/cam.py --image=$ATLASJAX_DATA/imagenet-sample/n01443537_goldfish.jpg \
      --layers=mixed5b,mixed4d,mixed3b --out=/tmp/cam

  python experiments/cam.py --model=efficientnet_lite0 --image=PHOTO --out=/tmp/cam

  python experiments/cam.py --model=vit_distilled --image=PHOTO --out=/tmp/cam

Writes cam.png (photo | CAM at the model's cam_layer, e.g. mixed5b | Grad-CAM
at each --layers entry) and cam.json (class, probability — softmax of the
logits for a model without a ``probs`` output — and the CAM's mean + bias
next to the logit). A model without a global-average-pool head (a CLS-token
ViT, ``cam_layer`` None) gets the Grad-CAM panels only, said in one printed
line and in cam.json; its default Grad-CAM layers are the deepest layer the
class logit depends on (on a ViT the last block's first LayerNorm: the last
block's own patch tokens reach no logit) and the default layer. A requested
layer whose Grad-CAM is zero by construction is named in a printed note.
"""

import json

from absl import flags
import jax
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
    "layers", None, "Layers for Grad-CAM (default: the model's CAM layer, or "
    "without one the deepest layer the class logit depends on, and its default "
    "atlas layer, e.g. mixed5b,mixed4c).")
_CMAP = flags.DEFINE_string("cmap", plotting.DEFAULT_CMAP, "Colormap.")


def _probabilities(model, params, image):
  """``(logits, probs)`` of one image; ``probs`` is softmax(logits) for a
  model without a ``probs`` output (a ViT's head gives logits only)."""
  has_probs = "probs" in model.layer_names
  layers = ("logits", "probs") if has_probs else ("logits",)
  out = jax.jit(lambda p, x: model.apply(p, x, layers=layers))(params, image)
  logits = out["logits"][0]
  return logits, out["probs"][0] if has_probs else jax.nn.softmax(logits)


def _grad_cam_layers(model, params, image, classes):
  """``(layers, zero_by_construction)``: --layers, else the CAM layer (or,
  without one, the deepest layer the class logit depends on) and the default
  layer; and those of them whose Grad-CAM is zero by construction, each
  named in a printed note. Reachability is checked (one backward pass) only
  for a model without a CAM layer (a CLS-token head), where it matters."""
  reached = (None if model.cam_layer is not None else
             attribution.reached_layers(model, params, image, classes))
  if _LAYERS.value:
    layers = model.check_layers(_LAYERS.value)
  else:
    first = model.cam_layer or attribution.deepest_reached_layer(
        model, params, image, classes, reached)
    layers = model.check_layers(tuple(dict.fromkeys([first, model.default_layer])))
  unreached = () if reached is None else tuple(l for l in layers if l not in reached)
  for layer in unreached:
    print(f"note: grad_cam:{layer} is zero by construction: the class logit does "
          "not depend on that layer (a CLS-token head reads only the CLS token "
          "after the last block); the deepest layer it depends on is "
          f"{attribution.deepest_reached_layer(model, params, image, classes, reached)}.")
  return layers, unreached


def _cam_panel(model, params, image, classes, target):
  """``(panel, json fields)`` of CAM at the model's CAM layer, or
  ``(None, fields saying why not)`` for a model without a GAP + linear head."""
  if model.cam_layer is None or model.classifier is None:
    return None, {"cam": None, "cam_skipped": (
        f"{model.name} has no global-average-pool + linear head (cam_layer is "
        "None), so CAM does not apply; Grad-CAM panels only")}
  cam = attribution.model_cam(model, params, image, classes)
  bias = model.classifier_params(params)["bias"][target]
  panel = plotting.heatmap_overlay(image[0], attribution.normalize_map(cam)[0],
                                   cmap=_CMAP.value)
  return panel, {"cam": f"cam:{model.cam_layer}",
                 "cam_mean_plus_bias": float(cam[0].mean() + bias)}


def main(argv):
  del argv
  model, params = cli.load_model()
  if _LAYERS.value:
    model.check_layers(_LAYERS.value)
  cli.image_file(_IMAGE.value)
  out_dir = cli.output_dir(_OUT.value)
  labels = labels_lib.load(cli.DATA.value)
  image = jnp.asarray(images_lib.load_for_model(_IMAGE.value,
                                                model.input_size))[None]
  logits, probs = _probabilities(model, params, image)
  target = (labels.lookup(_TARGET.value) if _TARGET.value
            else int(jnp.argmax(probs)))
  classes = jnp.array([target])
  layers, unreached = _grad_cam_layers(model, params, image, classes)
  cam_panel, cam_info = _cam_panel(model, params, image, classes, target)
  if cam_panel is None:
    print(f"note: {cam_info['cam_skipped']}.")
  panels = [image[0]] + ([cam_panel] if cam_panel is not None else [])
  for layer in layers:
    heat = attribution.grad_cam(model, params, image, classes, layer)
    panels.append(plotting.heatmap_overlay(
        image[0], attribution.normalize_map(heat)[0], cmap=_CMAP.value))
  plotting.save_png(plotting.hstack(panels), out_dir / "cam.png")
  info = {"image": _IMAGE.value, "class": target,
          "name": labels.short_name(target),
          "prob": float(probs[target]), "logit": float(logits[target]),
          **cam_info, "zero_by_construction": list(unreached),
          "panels": ["photo"] + ([cam_info["cam"]] if cam_panel is not None else [])
                    + [f"grad_cam:{l}" for l in layers]}
  (out_dir / "cam.json").write_text(json.dumps(info, indent=2))
  print(json.dumps(info))


if __name__ == "__main__":
  cli.run(main)
