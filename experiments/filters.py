r"""GoogLeNet's 64 first-layer (conv2d0, 7×7×3) filters as RGB tiles.

  python experiments/filters.py --out=/tmp/filters

Writes filters_per_filter.png and filters_global.png (8×8 grids; Caffe's BGR
input channels are flipped to RGB).
"""

import os

from absl import app
from absl import flags

from atlasjax import models
from atlasjax import plotting
from atlasjax.classic import filters
from atlasjax.models import inception_v1

_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_SCALE = flags.DEFINE_integer("scale", filters.DEFAULT_SCALE,
                              "Display pixels per weight.")
_MODEL = flags.DEFINE_string("model", models.DEFAULT_MODEL, "Model name.")
_DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA).")


def main(argv):
  del argv
  _, params = models.load(_MODEL.value, _DATA.value)
  spec = inception_v1.SPECS[_MODEL.value]
  kernel = params[spec.ops[0].source]["kernel"]
  for normalization in filters.NORMALIZATIONS:
    tiles = filters.filter_tiles(kernel, bgr=spec.input.bgr,
                                 normalization=normalization)
    path = plotting.save_png(
        filters.filter_grid(tiles, scale=_SCALE.value),
        os.path.join(_OUT.value, f"filters_{normalization}.png"))
    print(f"{len(tiles)} filters -> {path}")


if __name__ == "__main__":
  app.run(main)
