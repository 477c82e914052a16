"""Measurements of rendered images used by the faithfulness checks.

:func:`channel_means` scores images by a channel's mean activation (the
``channel`` objective without transforms); :func:`best_photo_activation` does
the same for a folder of photos (centre crop); :func:`high_frequency_fraction`
measures how much of an image's spectral power lies at high spatial frequency,
the signature of the adversarial high-frequency patterns that unregularized
pixel-space optimisation produces.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax import images as images_lib
from atlasjax.models import base

# Frequencies above this (cycles per pixel; Nyquist is 0.5) count as "high".
HIGH_FREQUENCY_CUTOFF = 0.25


def channel_means(model: base.Model, params, images, layer: str,
                  channels: Sequence[int] | None = None,
                  batch_size: int = 32) -> np.ndarray:
  """Mean activation of each channel of ``layer`` per image: ``[N, C]``
  (or ``[N, len(channels)]``)."""
  f = jax.jit(lambda x: model.apply(params, x, layers=(layer,))[layer].mean(axis=(1, 2)))
  out = [np.asarray(f(jnp.asarray(images[i:i + batch_size])))
         for i in range(0, len(images), batch_size)]
  means = np.concatenate(out)
  return means if channels is None else means[:, list(channels)]


def best_photo_activation(model: base.Model, params, paths: Sequence[str],
                          layer: str, channels: Sequence[int],
                          batch_size: int = 32) -> np.ndarray:
  """The highest mean activation of each channel over photos (centre crop)."""
  best = np.full(len(channels), -np.inf)
  f = jax.jit(lambda x: model.apply(params, x, layers=(layer,))[layer].mean(axis=(1, 2)))
  for batch in images_lib.iter_batches(paths, batch_size, warn=False):
    acts = np.asarray(f(jnp.asarray(batch.images)))[:, list(channels)]
    best = np.maximum(best, acts.max(axis=0))
  return best


def high_frequency_fraction(images, cutoff: float = HIGH_FREQUENCY_CUTOFF) -> np.ndarray:
  """Fraction of (mean-removed, grey-level) spectral power above ``cutoff``.

  Args:
    images: ``[N, H, W, 3]``.
    cutoff: radial frequency threshold in cycles per pixel.

  Returns:
    ``[N]`` fractions in [0, 1].
  """
  grey = np.asarray(images, np.float64)[..., :3].mean(axis=-1)
  grey = grey - grey.mean(axis=(1, 2), keepdims=True)
  power = np.abs(np.fft.fft2(grey)) ** 2
  h, w = grey.shape[1:]
  f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
  high = power[:, f > cutoff].sum(axis=1)
  return high / np.maximum(power.reshape(len(grey), -1).sum(axis=1), 1e-12)
