"""First-layer filter tiles."""

import numpy as np
import pytest

from atlasjax.classic import filters


def test_bgr_kernel_is_flipped_to_rgb():
  kernel = np.zeros((7, 7, 3, 2), np.float32)
  kernel[:, :, 0, 0] = 1.0   # filter 0 reads only B (Caffe channel 0)
  kernel[:, :, 2, 1] = 1.0   # filter 1 reads only R
  kernel[0, 0, :, :] = -1.0  # a dark corner so min-max is defined
  tiles = filters.filter_tiles(kernel, bgr=True)
  assert tiles.shape == (2, 7, 7, 3)
  np.testing.assert_allclose(tiles[0, 3, 3], [0.5, 0.5, 1.0])  # blue on grey
  np.testing.assert_allclose(tiles[1, 3, 3], [1.0, 0.5, 0.5])  # red
  same = filters.filter_tiles(kernel, bgr=False)
  np.testing.assert_allclose(same[0], tiles[0, ..., ::-1])


def test_per_filter_vs_global_normalization():
  kernel = np.random.default_rng(0).standard_normal((3, 3, 3, 4)).astype(
      np.float32)
  kernel[..., 1] *= 10
  per = filters.filter_tiles(kernel, bgr=False, normalization="per_filter")
  glob = filters.filter_tiles(kernel, bgr=False, normalization="global")
  for i in range(4):
    assert per[i].min() == 0 and per[i].max() == pytest.approx(1)
  assert glob.min() == 0 and glob.max() == pytest.approx(1)
  assert np.ptp(glob[0]) < 0.5 < np.ptp(glob[1])
  with pytest.raises(ValueError):
    filters.filter_tiles(kernel, bgr=False, normalization="other")


def test_googlenet_conv2d0_tiles(googlenet):
  _, params = googlenet
  kernel = np.asarray(params["params"]["conv2d0"]["kernel"])
  tiles = filters.filter_tiles(kernel, bgr=True)
  assert tiles.shape == (64, 7, 7, 3)
  k = kernel[..., 5]
  expected = (k - k.min()) / (k.max() - k.min())
  np.testing.assert_allclose(tiles[5], expected[..., ::-1], atol=1e-6)
  sheet = filters.filter_grid(tiles, scale=4, ncols=8)
  pad = 2
  assert sheet.shape == (8 * (28 + pad) + pad, 8 * (28 + pad) + pad, 3)
