r"""Activation grid ("building blocks", Olah et al., 2018) for one photo.

  python experiments/activation_grid.py \
      --image=$ATLASJAX_DATA/imagenet-sample/n01443537_goldfish.jpg \
      --layer=mixed4d --icon_size=48 --steps=256 --out=/tmp/activation_grid

The photo (shorter side resized to --photo_size, centre-cropped) goes through
the network; the activation vector at every spatial position of --layer is
feature-inverted with the activation-atlas icon objective (a cosine-weighted
direction at the icon's centre neuron), all H·W positions in one batched
render. With --collection=WORKDIR (a finished ``experiments/collect.py`` work
directory holding the layer) the objective is whitened by the inverse
activation covariance, as in activation atlases.

Writes activation_grid_<layer>.png (photo | icon grid, icons at their
positions), icons_<layer>.npy (uint8 [H, W, s, s, 3]) and
activation_grid_<layer>.json (grid shape and each icon's cosine with its own
vector when fed back through the network).
"""

import json

from absl import flags
import jax
import numpy as np

import cli
from atlasjax import images as images_lib
from atlasjax import plotting
from atlasjax.atlas import collect as collect_lib
from atlasjax.atlas import layout as layout_lib
from atlasjax.classic import synthesis
from atlasjax.optvis import render as render_lib

_IMAGE = flags.DEFINE_string("image", None, "Photo path.", required=True)
_LAYER = flags.DEFINE_string("layer", None, "Spatial layer (default: the "
                             "model's default layer, e.g. mixed4c).")
_PHOTO_SIZE = flags.DEFINE_integer(
    "photo_size", None, "Side of the photo fed to the network (default: the "
    "model's input size; 224 makes GoogLeNet's mixed4d 14×14).")
_ICON_SIZE = flags.DEFINE_integer("icon_size", 48, "Icon side in pixels.")
_STEPS = flags.DEFINE_integer("steps", 256, "Optimisation steps.")
_LR = flags.DEFINE_float("lr", render_lib.DEFAULT_LR, "Adam learning rate.")
_COSSIM_POW = flags.DEFINE_float("cossim_pow", synthesis.GRID_COSSIM_POW,
                                 "Cosine power of the icon objective.")
_TRANSFORMS = cli.define_transforms("atlas")
_COLLECTION = flags.DEFINE_string(
    "collection", None, "Collection work directory for the whitening matrix "
    "(default: no whitening).")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)


def main(argv):
  del argv
  cli.check_pieces(transforms=_TRANSFORMS.value)
  model, params = cli.load_model()
  layer = cli.spatial_layer(model, _LAYER.value)
  size = cli.check_size(model, _PHOTO_SIZE.value or model.input_size,
                        "--photo_size")
  cli.image_file(_IMAGE.value)
  out = cli.output_dir(_OUT.value)
  photo = images_lib.load_eval(_IMAGE.value, resize=size, crop=size)
  whitening = None
  if _COLLECTION.value:
    collection = collect_lib.Collection.open(_COLLECTION.value)
    whitening = layout_lib.whitening_matrix(
        collection.vectors_memmap(collection.check_layer(layer)))
  config = render_lib.RenderConfig(size=_ICON_SIZE.value, steps=_STEPS.value,
                                   lr=_LR.value, transforms=_TRANSFORMS.value)
  grid = synthesis.render_activation_grid(
      model, params, photo, layer, config, jax.random.PRNGKey(_SEED.value),
      whitening=whitening, cossim_pow=_COSSIM_POW.value)
  h, w, c = grid.vectors.shape
  targets = grid.vectors.reshape(h * w, c)
  targets = targets if whitening is None else targets @ whitening
  cos = synthesis.icon_cosines(model, params, grid.icons, layer, targets)
  own = np.diag(cos)
  plotting.save_png(synthesis.activation_grid_figure(photo, grid),
                    out / f"activation_grid_{layer}.png")
  np.save(out / f"icons_{layer}.npy", plotting.to_uint8(grid.icons))
  summary = {"image": _IMAGE.value, "layer": layer, "grid": [h, w],
             "icon_size": _ICON_SIZE.value, "whitened": whitening is not None,
             "mean_own_cosine": float(own.mean()),
             "mean_other_cosine": float((cos.sum() - own.sum()) / max(1, cos.size - len(own))),
             "retrieval": float((cos.argmax(axis=1) == np.arange(len(own))).mean())}
  (out / f"activation_grid_{layer}.json").write_text(json.dumps(summary, indent=1))
  print(json.dumps(summary))


if __name__ == "__main__":
  cli.run(main)
