"""Channel montages."""

import numpy as np
import pytest

from atlasjax.classic import montage


def test_montage_tiles_channels_row_major():
  h, w, c = 3, 5, 10
  rng = np.random.default_rng(0)
  acts = rng.random((h, w, c)).astype(np.float32)
  out = montage.channel_montage(acts, ncols=4, pad=1)
  assert out.shape == (3 * (h + 1) + 1, 4 * (w + 1) + 1)
  for ch in range(c):
    r, col = divmod(ch, 4)
    tile = out[1 + r * (h + 1):1 + r * (h + 1) + h,
               1 + col * (w + 1):1 + col * (w + 1) + w]
    a = acts[..., ch]
    np.testing.assert_allclose(tile, (a - a.min()) / (a.max() - a.min()),
                               atol=1e-6)


def test_montage_global_normalization_and_subset():
  acts = np.zeros((2, 2, 3), np.float32)
  acts[..., 1] = 1.0
  acts[0, 0, 2] = 4.0
  out = montage.channel_montage(acts, ncols=3, pad=0, normalization="global")
  np.testing.assert_allclose(out[:, 2:4], 0.25)
  assert out[0, 4] == 1.0 and out[1, 5] == 0.0
  sub = montage.channel_montage(acts, ncols=1, pad=0, channels=[2, 0],
                                normalization="global")
  assert sub.shape == (4, 2) and sub[0, 0] == 1.0
  with pytest.raises(ValueError):
    montage.channel_montage(acts[0])


def test_activations_of_toy_model(toy):
  model, params = toy
  image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
  acts = montage.activations(model, params, image, "conv2")
  assert acts.shape == (8, 8, 16)
  sheet = montage.channel_montage(acts)
  assert sheet.shape == (4 * 9 + 1, 4 * 9 + 1)
  with pytest.raises(ValueError, match="spatial"):
    montage.activations(model, params, image, "logits")
