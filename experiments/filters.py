r"""A model's first-layer filters (GoogLeNet: conv2d0's 64 7×7×3) as RGB tiles.

  python experiments/filters.py --out=/tmp/filters
  python experiments/filters.py --model=efficientnet_lite0 --out=/tmp/filters

Writes filters_per_filter.png and filters_global.png (grids of the kernel that
reads the RGB input; Caffe's BGR input channels are flipped to RGB).
"""

from absl import flags
import jax
import numpy as np

import cli
from atlasjax import plotting
from atlasjax.classic import filters
from atlasjax.models import inception_v1

_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_SCALE = flags.DEFINE_integer("scale", filters.DEFAULT_SCALE,
                              "Display pixels per weight.")


def first_layer_kernel(params):
  """The ``[kh, kw, 3, C]`` kernel that reads the RGB input (the stem conv)."""
  kernels = [(jax.tree_util.keystr(path), leaf) for path, leaf in
             jax.tree_util.tree_leaves_with_path(params)
             if np.ndim(leaf) == 4 and np.shape(leaf)[2] == 3]
  if len(kernels) != 1:
    raise ValueError(f"--model={cli.MODEL.value}: expected one convolution "
                     f"reading the 3 input channels, found {len(kernels)}.")
  return np.asarray(kernels[0][1])


def main(argv):
  del argv
  out_dir = cli.output_dir(_OUT.value)
  _, params = cli.load_model()
  kernel = first_layer_kernel(params)
  # GoogLeNet's Caffe weights read BGR; models ported from PyTorch read RGB.
  spec = inception_v1.SPECS.get(cli.MODEL.value)
  bgr = bool(spec and spec.input.bgr)
  for normalization in filters.NORMALIZATIONS:
    tiles = filters.filter_tiles(kernel, bgr=bgr, normalization=normalization)
    path = plotting.save_png(
        filters.filter_grid(tiles, scale=_SCALE.value),
        out_dir / f"filters_{normalization}.png")
    print(f"{len(tiles)} filters -> {path}")


if __name__ == "__main__":
  cli.run(main)
