"""Random image transforms: ``(key, image) -> image`` with static shapes.

A transform takes an explicit PRNG key and one image ``[H, W, C]`` and returns
an image whose shape depends only on the input shape (never on the key), so a
chain of transforms traces once under ``jit`` and vmaps over a batch. Random
choices are made with ``jax.random`` from the key; nothing is hidden.

Lucid's ``random_scale`` changes the image size; here scale and rotation are
affine resamplings about the centre that keep the size (bilinear, so the
result is differentiable in the pixels; samples falling outside take the
nearest edge pixel, which after a constant pad is the pad colour).

Presets (lists of transforms, composed by :func:`compose`): :func:`standard`
(Lucid's ``standard_transforms``), :func:`distill2017` (Olah et al., Feature
Visualization) and :func:`atlas` (the activation-atlas icon recipe).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Transform = Callable[[jax.Array, jax.Array], jax.Array]

# Pad colour of Lucid's presets (mid grey).
PAD_GREY = 0.5


def identity() -> Transform:
  return lambda key, img: img


def compose(*transforms: Transform) -> Transform:
  """Applies ``transforms`` in order, splitting the key once per transform."""
  transforms = tuple(transforms)
  if len(transforms) == 1 and isinstance(transforms[0], (list, tuple)):
    transforms = tuple(transforms[0])

  def apply(key, img):
    if not transforms:
      return img
    for t, k in zip(transforms, jax.random.split(key, len(transforms))):
      img = t(k, img)
    return img
  return apply


def pad(width: int, mode: str = "constant", value=PAD_GREY) -> Transform:
  """Pads ``width`` pixels on every side.

  Args:
    width: pixels per side.
    mode: ``"constant"`` or ``"reflect"``.
    value: the constant colour (a float), or ``"uniform"`` for a random grey
      level per call drawn from U(0, 1) (Lucid's ``constant_value="uniform"``).
  """
  if mode not in ("constant", "reflect"):
    raise ValueError(f"pad mode must be 'constant' or 'reflect', got {mode!r}")
  widths = ((width, width), (width, width), (0, 0))

  def apply(key, img):
    if mode == "reflect":
      return jnp.pad(img, widths, mode="reflect")
    v = jax.random.uniform(key) if value == "uniform" else value
    return jnp.pad(img, widths, mode="constant", constant_values=v)
  return apply


def jitter(d: int) -> Transform:
  """Random crop to ``(H - d, W - d)``: a shift of 0…d pixels on each axis."""
  def apply(key, img):
    h, w, c = img.shape
    dy, dx = jax.random.randint(key, (2,), 0, d + 1)
    return jax.lax.dynamic_slice(img, (dy, dx, 0), (h - d, w - d, c))
  return apply


def _choice(key, values: Sequence[float]) -> jax.Array:
  """One entry of ``values`` (duplicates weight it), uniformly at random."""
  return jax.random.choice(key, jnp.asarray(values, jnp.float32))


def affine(img: jax.Array, matrix: jax.Array) -> jax.Array:
  """Bilinear resampling about the image centre, same output shape.

  Output pixel ``p`` samples the input at ``c + matrix @ (p - c)``; coordinates
  outside the image are clamped to the edge.
  """
  h, w, c = img.shape
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - cy,
                        jnp.arange(w, dtype=jnp.float32) - cx, indexing="ij")
  sy = matrix[0, 0] * yy + matrix[0, 1] * xx + cy
  sx = matrix[1, 0] * yy + matrix[1, 1] * xx + cx
  sy = jnp.clip(sy, 0.0, h - 1.0)
  sx = jnp.clip(sx, 0.0, w - 1.0)
  y0 = jnp.clip(jnp.floor(sy), 0, max(h - 2, 0)).astype(jnp.int32)
  x0 = jnp.clip(jnp.floor(sx), 0, max(w - 2, 0)).astype(jnp.int32)
  wy = (sy - y0)[..., None]
  wx = (sx - x0)[..., None]
  y1 = jnp.minimum(y0 + 1, h - 1)
  x1 = jnp.minimum(x0 + 1, w - 1)
  flat = img.reshape(h * w, c)
  at = lambda y, x: jnp.take(flat, (y * w + x).reshape(-1), axis=0).reshape(h, w, c)
  top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
  bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
  return top * (1 - wy) + bottom * wy


def random_scale(scales: Sequence[float]) -> Transform:
  """Zooms about the centre by a factor drawn from ``scales`` (size kept)."""
  def apply(key, img):
    s = _choice(key, scales)
    return affine(img, jnp.eye(2) / s)
  return apply


def random_rotate(angles: Sequence[float], units: str = "degrees") -> Transform:
  """Rotates about the centre by an angle drawn from ``angles`` (size kept)."""
  factor = {"degrees": math.pi / 180.0, "radians": 1.0}[units]

  def apply(key, img):
    a = _choice(key, angles) * factor
    cos, sin = jnp.cos(a), jnp.sin(a)
    return affine(img, jnp.array([[cos, sin], [-sin, cos]]))
  return apply


def crop_or_pad_to(height: int, width: int | None = None,
                   value: float = PAD_GREY) -> Transform:
  """Centre crop (or constant pad) to ``(height, width)``; deterministic."""
  width = height if width is None else width

  def apply(key, img):
    del key
    h, w, _ = img.shape
    if h > height or w > width:
      top, left = max(0, (h - height) // 2), max(0, (w - width) // 2)
      img = img[top:top + min(h, height), left:left + min(w, width)]
      h, w, _ = img.shape
    if h < height or w < width:
      ph, pw = height - h, width - w
      img = jnp.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2),
                          (0, 0)), constant_values=value)
    return img
  return apply


def collapse_alpha_random() -> Transform:
  """Composites an RGBA image over uniform random noise; returns RGB.

  Random backgrounds make the optimiser put the visualization in the opaque
  part and leave irrelevant regions transparent (atlas icons with alpha).
  """
  def apply(key, img):
    rgb, a = img[..., :3], img[..., 3:4]
    background = jax.random.uniform(key, rgb.shape)
    return a * rgb + (1.0 - a) * background
  return apply


# ----------------------------------------------------------------------------
# Presets.

LUCID_SCALES = tuple(1 + (i - 5) / 50.0 for i in range(11))
LUCID_ANGLES = tuple(range(-10, 11)) + 5 * (0,)
DISTILL_SCALES = (1.0, 0.975, 1.025, 0.95, 1.05)
DISTILL_ANGLES = tuple(range(-5, 6))
ATLAS_SCALES = tuple([0.995 ** n for n in range(-5, 80)]
                     + [0.998 ** n for n in 2 * list(range(20, 40))])
ATLAS_ANGLES = tuple(list(range(-20, 20)) + list(range(-10, 10))
                     + list(range(-5, 5)) + 5 * [0])


def standard() -> list[Transform]:
  """Lucid's ``standard_transforms``: pad 12 (grey), jitter 8, scale
  0.9…1.1, rotate −10…10° (zero five times more likely), jitter 4."""
  return [pad(12, "constant", PAD_GREY), jitter(8), random_scale(LUCID_SCALES),
          random_rotate(LUCID_ANGLES), jitter(4)]


def distill2017(size: int) -> list[Transform]:
  """Feature Visualization (Distill 2017): pad 16, jitter 16, scale
  {1, 0.975, 1.025, 0.95, 1.05}, rotate −5…5°, jitter 8, crop to ``size``."""
  return [pad(16, "constant", PAD_GREY), jitter(16), random_scale(DISTILL_SCALES),
          random_rotate(DISTILL_ANGLES), jitter(8), crop_or_pad_to(size)]


def atlas(alpha: bool = False) -> list[Transform]:
  """The activation-atlas icon recipe (``render_icons`` in the notebook)."""
  ts = [collapse_alpha_random()] if alpha else []
  return ts + [pad(2, "constant", 1.0), jitter(4), jitter(4), jitter(8),
               jitter(8), jitter(8), random_scale(ATLAS_SCALES),
               random_rotate(ATLAS_ANGLES), jitter(2)]


PRESETS = ("standard", "distill2017", "atlas", "none")


def preset(name: str, size: int, alpha: bool = False) -> Transform:
  """The composed preset ``name`` for ``size``-pixel images."""
  if name == "standard":
    ts = standard()
  elif name == "distill2017":
    ts = distill2017(size)
  elif name == "atlas":
    return compose(*atlas(alpha))
  elif name == "none":
    ts = []
  else:
    raise ValueError(f"Unknown transforms preset {name!r}; choose from {PRESETS}")
  if alpha:
    ts = [collapse_alpha_random()] + ts
  return compose(*ts)


__all__ = [
    "Transform", "compose", "identity", "pad", "jitter", "affine",
    "random_scale", "random_rotate", "crop_or_pad_to", "collapse_alpha_random",
    "standard", "distill2017", "atlas", "preset", "PRESETS",
]
