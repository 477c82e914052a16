r"""Vanilla-gradient saliency and SmoothGrad for one photo.

  python experiments/saliency.py --image=$ATLASJAX_DATA/imagenet-sample/n01443537_goldfish.jpg \
      --out=/tmp/saliency

Writes saliency.png (photo | vanilla | SmoothGrad | SmoothGrad overlay) and
saliency.json (the explained class and its probability).
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
_SAMPLES = flags.DEFINE_integer("samples", 32, "SmoothGrad samples.")
_NOISE = flags.DEFINE_float("noise", 0.15, "SmoothGrad noise sd / image range.")
_SEED = flags.DEFINE_integer("seed", 0, "SmoothGrad noise seed.")
_PERCENTILE = flags.DEFINE_float("percentile", 99.0, "Display clip percentile.")


def main(argv):
  del argv
  model, params = cli.load_model()
  cli.image_file(_IMAGE.value)
  out_dir = cli.output_dir(_OUT.value)
  labels = labels_lib.load(cli.DATA.value)
  image = jnp.asarray(images_lib.load_for_model(_IMAGE.value,
                                                model.input_size))[None]
  probs = model.apply(params, image, layers=("probs",))["probs"][0]
  target = (labels.lookup(_TARGET.value) if _TARGET.value
            else int(jnp.argmax(probs)))
  classes = jnp.array([target])
  vanilla = attribution.saliency(model, params, image, classes)
  smooth = attribution.smoothgrad(model, params, image, classes,
                                  jax.random.PRNGKey(_SEED.value),
                                  _SAMPLES.value, _NOISE.value)
  maps = [plotting.normalize(attribution.saliency_map(g)[0],
                             percentile=_PERCENTILE.value)
          for g in (vanilla, smooth)]
  panel = plotting.hstack([image[0], maps[0], maps[1],
                           plotting.heatmap_overlay(image[0], maps[1],
                                                    cmap="inferno")])
  plotting.save_png(panel, out_dir / "saliency.png")
  info = {"image": _IMAGE.value, "class": target,
          "name": labels.short_name(target), "prob": float(probs[target]),
          "samples": _SAMPLES.value, "noise": _NOISE.value, "seed": _SEED.value}
  (out_dir / "saliency.json").write_text(json.dumps(info, indent=2))
  print(json.dumps(info))


if __name__ == "__main__":
  cli.run(main)
