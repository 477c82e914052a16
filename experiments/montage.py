r"""Channel montage of one photo's activations at a layer.

  python experiments/montage.py --image=$ATLASJAX_DATA/imagenet-sample/n01443537_goldfish.jpg \
      --layer=mixed3a --out=/tmp/montage

Writes montage_<layer>.png: every channel's activation map, row-major
(channel c at row c // cols, column c % cols), next to the photo.
"""

import os

from absl import app
from absl import flags
import numpy as np

from atlasjax import images as images_lib
from atlasjax import models
from atlasjax import plotting
from atlasjax.classic import montage

_IMAGE = flags.DEFINE_string("image", None, "Photo.", required=True)
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_LAYER = flags.DEFINE_string("layer", "mixed3a", "Spatial layer name.")
_COLS = flags.DEFINE_integer("cols", None, "Tiles per row (default sqrt(C)).")
_NORMALIZATION = flags.DEFINE_enum("normalization", "per_channel",
                                   montage.NORMALIZATIONS, "Scaling of maps.")
_CMAP = flags.DEFINE_string("cmap", "viridis", "Colormap for the maps.")
_DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA).")


def main(argv):
  del argv
  model, params = models.load(data=_DATA.value)
  image = images_lib.load_eval(_IMAGE.value)
  acts = montage.activations(model, params, image, _LAYER.value)
  sheet = montage.channel_montage(acts, ncols=_COLS.value,
                                  normalization=_NORMALIZATION.value)
  coloured = plotting.colorize(sheet, _CMAP.value)
  side = coloured.shape[0]
  photo = plotting.resize(image, (side, side))
  path = plotting.save_png(
      plotting.hstack([photo, coloured]),
      os.path.join(_OUT.value, f"montage_{_LAYER.value}.png"))
  print(f"{acts.shape[-1]} channels of {acts.shape[0]}x{acts.shape[1]} at "
        f"{_LAYER.value}; max activation {float(np.max(acts)):.3f} -> {path}")


if __name__ == "__main__":
  app.run(main)
