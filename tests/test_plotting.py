"""Tests for the shared image helpers."""

import numpy as np
from PIL import Image
import pytest

from atlasjax import plotting


def test_normalize_ranges():
  x = np.array([[-2.0, 0.0], [1.0, 6.0]])
  np.testing.assert_allclose(plotting.normalize(x), (x + 2) / 8)
  sym = plotting.normalize(x, symmetric=True)
  assert sym[0, 1] == pytest.approx(0.5) and sym[1, 1] == pytest.approx(1.0)
  per = plotting.normalize(np.stack([x, 10 * x]), axis=(1, 2))
  np.testing.assert_allclose(per[0], per[1], atol=1e-6)


def test_normalize_percentile_clips_outliers():
  x = np.concatenate([np.linspace(0, 1, 1000), [1000.0]])
  out = plotting.normalize(x, percentile=99)
  assert out.max() == 1.0 and out[500] == pytest.approx(0.5, abs=0.02)


def test_grid_places_tile_i_at_row_major_position():
  tiles = np.stack([np.full((3, 4), i, np.float32) for i in range(7)])
  out = plotting.grid(tiles, ncols=3, pad=2, pad_value=-1)
  assert out.shape == (3 * (3 + 2) + 2, 3 * (4 + 2) + 2)
  for i in range(7):
    r, c = divmod(i, 3)
    top, left = 2 + r * 5, 2 + c * 6
    assert (out[top:top + 3, left:left + 4] == i).all()
  assert (out[:2] == -1).all() and (out[12:15, 14:18] == -1).all()  # empty cell


def test_grid_rgb_default_columns():
  out = plotting.grid(np.zeros((5, 2, 2, 3)), pad=1)
  assert out.shape == (2 * 3 + 1, 3 * 3 + 1, 3)


def test_heatmap_overlay_resizes_and_highlights_hot_region():
  image = np.full((64, 64, 3), 0.5, np.float32)
  heat = np.zeros((4, 4))
  heat[0, 0] = 1.0
  out = plotting.heatmap_overlay(image, heat, cmap="jet")
  assert out.shape == (64, 64, 3) and 0 <= out.min() and out.max() <= 1
  hot, cold = out[2, 2], out[60, 60]
  assert hot[0] > cold[0]  # jet: high values are red, low ones blue
  assert cold[2] > cold[0]


def test_colorize_uses_matplotlib_colormap():
  out = plotting.colorize(np.array([[0.0, 1.0]]), "gray")
  np.testing.assert_allclose(out[0, 0], 0, atol=1e-6)
  np.testing.assert_allclose(out[0, 1], 1, atol=1e-6)


def test_save_png_roundtrip(tmp_path):
  image = np.random.default_rng(0).random((5, 6, 3)).astype(np.float32)
  path = plotting.save_png(image, tmp_path / "sub" / "x.png")
  back = np.asarray(Image.open(path)) / 255.0
  np.testing.assert_allclose(back, image, atol=1 / 255)
  gray = plotting.save_png(image[..., 0], tmp_path / "g.png")
  assert np.asarray(Image.open(gray)).shape == (5, 6, 3)


def test_hstack_and_contact_sheet(tmp_path):
  a, b = np.zeros((10, 10, 3)), np.ones((20, 10))
  out = plotting.hstack([a, b], pad=1)
  assert out.shape == (12, 10 + 5 + 3, 3)
  path = plotting.save_contact_sheet([a, b, a], tmp_path / "s.png",
                                     titles=["a", "b", "c"], ncols=2)
  assert Image.open(path).size[0] > 0


def test_upscale_and_resize():
  x = np.arange(4, dtype=np.float32).reshape(2, 2)
  big = plotting.upscale(x, 3)
  assert big.shape == (6, 6) and (big[:3, :3] == 0).all() and big[5, 5] == 3
  assert plotting.resize(np.zeros((4, 4, 3)), (8, 6)).shape == (8, 6, 3)
