"""First-layer filters as RGB tiles (the classic AlexNet/GoogLeNet figure).

A first convolution's kernel ``[kh, kw, 3, N]`` (HWIO) becomes ``N`` tiles
``[kh, kw, 3]`` in [0, 1]. Caffe models (BVLC GoogLeNet) read BGR input, so
their kernels' input channels are flipped to RGB for display::

  tiles = filters.filter_tiles(params["params"]["conv2d0"]["kernel"],
                               bgr=True, normalization="per_filter")
  sheet = filters.filter_grid(tiles, scale=8)     # 8×8 grid of 7×7 tiles
"""

from __future__ import annotations

import numpy as np

from atlasjax import plotting

NORMALIZATIONS = ("per_filter", "global")
DEFAULT_SCALE = 8                       # display pixels per weight
_TILE_PAD = 1


def filter_tiles(kernel, bgr: bool, normalization: str = "per_filter"
                 ) -> np.ndarray:
  """``[kh, kw, 3, N]`` kernel to ``[N, kh, kw, 3]`` RGB tiles in [0, 1].

  Args:
    kernel: HWIO weights of a convolution reading the 3-channel image.
    bgr: the kernel's input channels are B, G, R (flip them to RGB).
    normalization: ``"per_filter"`` stretches each filter's own min..max to
      [0, 1] (shows every filter's pattern); ``"global"`` uses one min..max for
      all filters (shows relative strength).
  """
  kernel = np.asarray(kernel, np.float32)
  if kernel.ndim != 4 or kernel.shape[2] != 3:
    raise ValueError(f"expected a [kh, kw, 3, N] kernel, got {kernel.shape}")
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"Unknown normalization {normalization!r}; "
                     f"use one of {NORMALIZATIONS}.")
  tiles = np.moveaxis(kernel, -1, 0)               # [N, kh, kw, 3]
  if bgr:
    tiles = tiles[..., ::-1]
  axis = (1, 2, 3) if normalization == "per_filter" else None
  return plotting.normalize(tiles, axis=axis)


def filter_grid(tiles: np.ndarray, scale: int = DEFAULT_SCALE,
                ncols: int | None = None) -> np.ndarray:
  """Tiles enlarged ``scale`` times (nearest neighbour) in a grid with white gaps."""
  big = np.stack([plotting.upscale(t, scale) for t in tiles])
  return plotting.grid(big, ncols=ncols, pad=_TILE_PAD * scale // 2 or 1)
