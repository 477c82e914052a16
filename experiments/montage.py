r"""Channel montage of one photo's activations at a layer.

  python experiments/montage.py --image=$ATLASJAX_DATA/imagenet-sample/n01443537_goldfish.jpg \
      --layer=mixed3a --out=/tmp/montage

Writes montage_<layer>.png: every channel's activation map, row-major
(channel c at row c // cols, column c % cols), next to the photo.
"""


from absl import flags
import numpy as np

import cli
from atlasjax import images as images_lib
from atlasjax import plotting
from atlasjax.classic import montage

_IMAGE = flags.DEFINE_string("image", None, "Photo.", required=True)
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_LAYER = flags.DEFINE_string("layer", None, "Spatial layer name (default: "
                             "the model's default layer, e.g. mixed4c).")
_COLS = flags.DEFINE_integer("cols", None, "Tiles per row (default sqrt(C)).")
_NORMALIZATION = flags.DEFINE_enum("normalization", "per_channel",
                                   montage.NORMALIZATIONS, "Scaling of maps.")
_CMAP = flags.DEFINE_string("cmap", "viridis", "Colormap for the maps.")


def main(argv):
  del argv
  model, params = cli.load_model()
  layer = cli.spatial_layer(model, _LAYER.value)
  cli.image_file(_IMAGE.value)
  out_dir = cli.output_dir(_OUT.value)
  image = images_lib.load_for_model(_IMAGE.value, model.input_size)
  acts = montage.activations(model, params, image, layer)
  sheet = montage.channel_montage(acts, ncols=_COLS.value,
                                  normalization=_NORMALIZATION.value)
  coloured = plotting.colorize(sheet, _CMAP.value)
  side = coloured.shape[0]
  photo = plotting.resize(image, (side, side))
  path = plotting.save_png(
      plotting.hstack([photo, coloured]),
      out_dir / f"montage_{layer}.png")
  print(f"{acts.shape[-1]} channels of {acts.shape[0]}x{acts.shape[1]} at "
        f"{layer}; max activation {float(np.max(acts)):.3f} -> {path}")


if __name__ == "__main__":
  cli.run(main)
