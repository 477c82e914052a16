"""Channel montages: every channel of one image's activations at a layer.

  acts = montage.activations(model, params, image, "mixed3a")   # [h, w, C]
  sheet = montage.channel_montage(acts, ncols=16)              # [H', W'] in [0, 1]

Channel ``c`` is tile ``c`` of :func:`atlasjax.plotting.grid` (row ``c // ncols``,
column ``c % ncols``), so a montage can be read back channel by channel.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from atlasjax import plotting
from atlasjax.models import base

NORMALIZATIONS = ("per_channel", "global")


@functools.partial(jax.jit, static_argnames=("model", "layer"))
def _apply_one(model, params, images, layer):
  return model.apply(params, images, layers=(layer,))[layer]


def activations(model: base.Model, params, image, layer: str) -> np.ndarray:
  """``[h, w, C]`` activations of one ``[H, W, 3]`` image at a spatial layer."""
  if not model.layer(layer).spatial:
    raise ValueError(f"Layer {layer!r} has no spatial extent; pick a conv layer.")
  return np.asarray(_apply_one(model, params, image[None], layer)[0])


def channel_montage(acts, ncols: int | None = None,
                    normalization: str = "per_channel", pad: int = 1,
                    channels=None) -> np.ndarray:
  """Grid of ``[h, w]`` channel maps in [0, 1] (grayscale).

  Args:
    acts: ``[h, w, C]`` activations.
    ncols: tiles per row (default ``ceil(sqrt(C))``).
    normalization: ``"per_channel"`` (each map's own min..max) or ``"global"``
      (one range for the whole layer, so weak channels look dark).
    pad: separator width between tiles.
    channels: optional subset/order of channel indices.
  """
  acts = np.asarray(acts, np.float32)
  if acts.ndim != 3:
    raise ValueError(f"expected [h, w, C] activations, got {acts.shape}")
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"Unknown normalization {normalization!r}; "
                     f"use one of {NORMALIZATIONS}.")
  maps = np.moveaxis(acts, -1, 0)                   # [C, h, w]
  if channels is not None:
    maps = maps[np.asarray(channels)]
  axis = (1, 2) if normalization == "per_channel" else None
  return plotting.grid(plotting.normalize(maps, axis=axis), ncols=ncols, pad=pad)
