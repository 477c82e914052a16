"""Random image transforms: ``(key, image) -> image`` with static shapes.

A transform takes an explicit PRNG key and one image ``[H, W, C]`` and returns
an image whose shape depends only on the input shape (never on the key), so a
chain of transforms traces once under ``jit`` and vmaps over a batch. Random
choices are made with ``jax.random`` from the key; nothing is hidden.

The geometric part of every preset is ONE resampling, :func:`random_affine`:
Lucid's chain pad → jitter → scale → rotate → jitter is an affine map from the
output pixel grid to the input image (integer shifts, then ``R(θ)/s`` about the
centre, then integer shifts), so it is applied as one ``2×2`` matrix and one
offset per image and one bilinear pass. Two chained bilinear resamplings blur
twice and cost twice; this one is exact for the shifts and the padding.
Samples falling outside the image take the *fill* (a constant such as Lucid's
grey pad, a random grey level per call, or per-pixel uniform noise), blended
bilinearly at the border exactly as a constant pad would be; never the edge
pixel smeared outwards.

Lucid's ``random_scale`` changes the image size; here scales and rotations
are about the centre and keep the size.

Presets (lists of transforms, composed by :func:`compose`): :func:`standard`
(Lucid's ``standard_transforms``), :func:`distill2017` (Olah et al., Feature
Visualization), :func:`atlas` (activation-atlas icons, full frame: the view
covers the whole icon), :func:`atlas_notebook` (the notebook's crop
geometry, for reproductions) and :func:`maco_crops` (MaCo's many random crops
per step, with a box that shrinks over the optimisation, plus noise).

A transform may follow a schedule: :func:`scheduled` marks one that takes a
third argument, the optimisation's progress in [0, 1] (the renderer passes
``step / (steps − 1)``); :func:`at_progress` binds it. A transform may also
return several views ``[K, h, w, C]`` of its image; the renderer then feeds
the network ``B·K`` views per item, which the objective averages over.
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
# Fill names accepted besides a constant colour: a random grey level per call
# (Lucid's ``constant_value="uniform"``) and independent uniform noise per
# pixel and channel (what ``collapse_alpha_random`` composites over).
FILL_UNIFORM = "uniform"
FILL_NOISE = "noise"
FILLS = (FILL_UNIFORM, FILL_NOISE)


def identity() -> Transform:
  """The transform that returns the image unchanged."""
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


def scheduled(fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
              ) -> Callable[..., jax.Array]:
  """Marks ``fn(key, img, progress)`` as a transform that follows a schedule."""
  fn.scheduled = True
  return fn


def at_progress(transform, progress) -> Transform:
  """``transform`` at ``progress`` ∈ [0, 1] (itself if it has no schedule)."""
  if getattr(transform, "scheduled", False):
    return lambda key, img: transform(key, img, progress)
  return transform


def _check_fill(fill) -> None:
  if isinstance(fill, str) and fill not in FILLS:
    raise ValueError(f"fill must be a number or one of {FILLS}, got {fill!r}")


def _fill_value(key, fill, shape, dtype):
  """The fill for an output of ``shape``: a scalar or a per-pixel array."""
  if fill == FILL_NOISE:
    return jax.random.uniform(key, shape, dtype)
  if fill == FILL_UNIFORM:
    return jax.random.uniform(key, (), dtype)
  return jnp.asarray(fill, dtype)


def pad(width: int, mode: str = "constant", value=PAD_GREY) -> Transform:
  """Pads ``width`` pixels on every side.

  Args:
    width: pixels per side.
    mode: ``"constant"`` or ``"reflect"``.
    value: the constant colour (a float), ``"uniform"`` for a random grey
      level per call drawn from U(0, 1) (Lucid's ``constant_value="uniform"``)
      or ``"noise"`` for uniform noise per pixel.
  """
  if mode not in ("constant", "reflect"):
    raise ValueError(f"pad mode must be 'constant' or 'reflect', got {mode!r}")
  _check_fill(value)
  widths = ((width, width), (width, width), (0, 0))

  def apply(key, img):
    if mode == "reflect":
      return jnp.pad(img, widths, mode="reflect")
    if value == FILL_NOISE:
      h, w, c = img.shape
      noise = jax.random.uniform(key, (h + 2 * width, w + 2 * width, c), img.dtype)
      return jax.lax.dynamic_update_slice(noise, img, (width, width, 0))
    v = _fill_value(key, value, (), img.dtype)
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


def affine(img: jax.Array, matrix: jax.Array, offset=None,
           out_shape: tuple[int, int] | None = None, fill=None) -> jax.Array:
  """Bilinear resampling about the image centres.

  Output pixel ``p`` (of an ``out_shape`` grid, default the input's) samples
  the input at ``c_in + offset + matrix @ (p - c_out)``, where ``c`` are the
  grid centres. With ``fill=None`` coordinates outside the image are clamped
  to the edge; otherwise ``fill`` (a scalar or an ``[oh, ow, C]`` array)
  stands for everything outside the image, blended at the border exactly as
  if the image had been padded with it.
  """
  h, w, c = img.shape
  oh, ow = (h, w) if out_shape is None else out_shape
  yy, xx = jnp.meshgrid(jnp.arange(oh, dtype=jnp.float32) - (oh - 1) / 2.0,
                        jnp.arange(ow, dtype=jnp.float32) - (ow - 1) / 2.0,
                        indexing="ij")
  oy, ox = (0.0, 0.0) if offset is None else (offset[0], offset[1])
  sy = matrix[0, 0] * yy + matrix[0, 1] * xx + ((h - 1) / 2.0 + oy)
  sx = matrix[1, 0] * yy + matrix[1, 1] * xx + ((w - 1) / 2.0 + ox)
  if fill is None:
    sy = jnp.clip(sy, 0.0, h - 1.0)
    sx = jnp.clip(sx, 0.0, w - 1.0)
  y0f, x0f = jnp.floor(sy), jnp.floor(sx)
  wy, wx = sy - y0f, sx - x0f
  y0, x0 = y0f.astype(jnp.int32), x0f.astype(jnp.int32)
  ys = jnp.stack([y0, y0, y0 + 1, y0 + 1])
  xs = jnp.stack([x0, x0 + 1, x0, x0 + 1])
  weights = jnp.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx])
  if fill is not None:
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    weights = jnp.where(inside, weights, 0.0)
  index = jnp.clip(ys, 0, h - 1) * w + jnp.clip(xs, 0, w - 1)
  # One gather for the four neighbours of every output pixel.
  corners = jnp.take(img.reshape(h * w, c), index.reshape(-1), axis=0)
  out = jnp.einsum("kp,kpc->pc", weights.reshape(4, -1),
                   corners.reshape(4, oh * ow, c)).reshape(oh, ow, c)
  if fill is None:
    return out
  outside = (1.0 - weights.sum(0))[..., None]
  return out + outside * fill


def _shift(key, jitters: Sequence[int]) -> jax.Array:
  """Sum of independent integer shifts ``U{0..d}`` per axis, centred: ``[2]``."""
  if not jitters:
    return jnp.zeros((2,), jnp.float32)
  d = jnp.asarray(jitters, jnp.int32)[:, None]
  draws = jax.random.randint(key, (len(jitters), 2), 0, d + 1)
  return (draws.sum(0) - d.sum() / 2.0).astype(jnp.float32)


def random_affine(*, pad: int = 0, jitter_before: int | Sequence[int] = (),
                  scales: Sequence[float] = (1.0,),
                  angles: Sequence[float] = (0.0,), units: str = "degrees",
                  jitter_after: int | Sequence[int] = (),
                  out_size: int | None = None, cover: bool = False,
                  fill=PAD_GREY) -> Transform:
  """Pad, jitter, scale, rotate and jitter again as ONE bilinear resampling.

  Length: half of it is the derivation below; the body is ~30 lines.

  The same image distribution as ``pad(pad)``, ``jitter(d)`` for each ``d`` in
  ``jitter_before``, a zoom by ``s`` drawn from ``scales``, a rotation by an
  angle drawn from ``angles`` (both about the centre), ``jitter(d)`` for each
  ``d`` in ``jitter_after`` — composed into one ``2×2`` matrix ``R(θ)/s`` and
  one offset per image, then one resampling whose out-of-image samples take
  ``fill`` (the pad colour, ``"uniform"`` or ``"noise"``).

  Args:
    pad: virtual padding per side (only sets the output size: the fill stands
      for everything outside the image).
    jitter_before: shifts (pixels) applied before the zoom and rotation.
    scales: zoom factors (> 1 enlarges), drawn uniformly (duplicates weight).
    angles: rotation angles, drawn uniformly.
    units: ``"degrees"`` or ``"radians"``.
    jitter_after: shifts applied after the zoom and rotation.
    out_size: output side; default ``H + 2·pad − Σ jitters`` as the chain
      of crops would give.
    cover: map the whole input onto the ``out_size`` output at scale 1 (the
      view covers the full frame; the network sees the image resized by
      ``out_size / H``) instead of one output pixel per input pixel.
    fill: the colour outside the image: a number, ``"uniform"`` or
      ``"noise"``.
  """
  before = (jitter_before,) if isinstance(jitter_before, int) else tuple(jitter_before)
  after = (jitter_after,) if isinstance(jitter_after, int) else tuple(jitter_after)
  factor = {"degrees": math.pi / 180.0, "radians": 1.0}[units]
  scales = tuple(float(s) for s in scales)
  angles = tuple(float(a) for a in angles)
  _check_fill(fill)

  def apply(key, img):
    h, w, c = img.shape
    crop = sum(before) + sum(after)
    oh, ow = ((h + 2 * pad - crop, w + 2 * pad - crop) if out_size is None
              else (out_size, out_size))
    if min(oh, ow) < 1:
      raise ValueError(f"random_affine: {h}×{w} px with pad {pad} and jitters "
                       f"{before + after} leaves no pixels; use a larger image.")
    zoom = (h / oh, w / ow) if cover else (1.0, 1.0)
    k_scale, k_angle, k_before, k_after, k_fill = jax.random.split(key, 5)
    s = _choice(k_scale, scales) if len(scales) > 1 else jnp.float32(scales[0])
    a = (_choice(k_angle, angles) if len(angles) > 1
         else jnp.float32(angles[0])) * factor
    cos, sin = jnp.cos(a) / s, jnp.sin(a) / s
    rot = jnp.array([[cos, sin], [-sin, cos]])
    # Output pixels are ``zoom`` input pixels apart before the zoom/rotation.
    matrix = rot @ jnp.diag(jnp.asarray(zoom, jnp.float32)) if cover else rot
    # Output p samples c_in + t1 + M (p − c_out + t2): t1 the shifts before
    # the zoom (input pixels), t2 the shifts after it (output pixels).
    offset = _shift(k_before, before) + matrix @ _shift(k_after, after)
    value = _fill_value(k_fill, fill, (oh, ow, c), img.dtype)
    return affine(img, matrix, offset, (oh, ow), value)
  return apply


def random_scale(scales: Sequence[float], fill=None) -> Transform:
  """Zooms about the centre by a factor drawn from ``scales`` (size kept).

  ``fill=None`` clamps to the edge (a standalone transform has no pad
  colour); presets use :func:`random_affine` instead.
  """
  def apply(key, img):
    s = _choice(key, scales)
    return affine(img, jnp.eye(2) / s, fill=fill)
  return apply


def random_rotate(angles: Sequence[float], units: str = "degrees",
                  fill=None) -> Transform:
  """Rotates about the centre by an angle drawn from ``angles`` (size kept)."""
  factor = {"degrees": math.pi / 180.0, "radians": 1.0}[units]

  def apply(key, img):
    a = _choice(key, angles) * factor
    cos, sin = jnp.cos(a), jnp.sin(a)
    return affine(img, jnp.array([[cos, sin], [-sin, cos]]), fill=fill)
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
# The notebook's jitters: five before the zoom, one after.
ATLAS_JITTERS_BEFORE = (4, 4, 8, 8, 8)
ATLAS_JITTERS_AFTER = (2,)
# Full-frame icons: the notebook's scale set divided by its median, so that the
# median step shows exactly the whole icon (zoom-outs add fill around it,
# zoom-ins crop its border for that step).
ATLAS_FRAME_SCALES = tuple(s / float(np.median(ATLAS_SCALES)) for s in ATLAS_SCALES)
# The network's view of a full-frame icon, as a fraction of the icon side.
# The notebook's crop shows the network 50 of the icon's 80 px per step; the
# full frame is resized to the same 50 px, so every pixel gets gradient at
# the same network cost (and no padding up to a minimum size is needed).
ATLAS_VIEW_FRACTION = 50.0 / 80.0


def standard() -> list[Transform]:
  """Lucid's ``standard_transforms``: pad 12 (grey), jitter 8, scale
  0.9…1.1, rotate −10…10° (zero five times more likely), jitter 4 — as one
  resampling."""
  return [random_affine(pad=12, jitter_before=8, scales=LUCID_SCALES,
                        angles=LUCID_ANGLES, jitter_after=4, fill=PAD_GREY)]


def distill2017(size: int) -> list[Transform]:
  """Feature Visualization (Distill 2017): pad 16, jitter 16, scale
  {1, 0.975, 1.025, 0.95, 1.05}, rotate −5…5°, jitter 8, crop to ``size`` —
  as one resampling (the centre crop is a smaller output grid)."""
  return [random_affine(pad=16, jitter_before=16, scales=DISTILL_SCALES,
                        angles=DISTILL_ANGLES, jitter_after=8, out_size=size,
                        fill=PAD_GREY)]


def atlas_view_size(size: int) -> int:
  """Side of the network's view of a full-frame ``size``-pixel icon."""
  return max(1, int(round(size * ATLAS_VIEW_FRACTION)))


def atlas(size: int, alpha: bool = False) -> list[Transform]:
  """Activation-atlas icons, full frame.

  The notebook's recipe (``render_icons``: jitters 4, 4, 8, 8, 8, its scale
  and angle sets, jitter 2) with the view covering the whole icon: every
  step resizes the full ``size``-pixel icon onto :func:`atlas_view_size`
  pixels (zoomed by the notebook's scales about their median, rotated,
  shifted by its jitters), and what falls outside the icon is uniform noise,
  which carries no gradient and no constant frame the network could use.
  """
  ts = [collapse_alpha_random()] if alpha else []
  return ts + [random_affine(
      jitter_before=ATLAS_JITTERS_BEFORE, scales=ATLAS_FRAME_SCALES,
      angles=ATLAS_ANGLES, jitter_after=ATLAS_JITTERS_AFTER,
      out_size=atlas_view_size(size), cover=True, fill=FILL_NOISE)]


def atlas_notebook(alpha: bool = False) -> list[Transform]:
  """The notebook's crop geometry, for reproductions: pad 2 (white), jitters
  4, 4, 8, 8, 8, scale, rotate, jitter 2, as one resampling. An 80 px icon
  becomes a 50 px view of its middle; its border rarely gets gradient."""
  ts = [collapse_alpha_random()] if alpha else []
  return ts + [random_affine(
      pad=2, jitter_before=ATLAS_JITTERS_BEFORE, scales=ATLAS_SCALES,
      angles=ATLAS_ANGLES, jitter_after=ATLAS_JITTERS_AFTER, fill=1.0)]


# MaCo's crops (Fel et al. 2023; Xplique's defaults, noise rescaled from its
# [-1, 1] value range to our [0, 1]): crops per step, the mean box side as a
# fraction of the image at the first and last step (per-crop jitter of
# MACO_BOX_SD), centres N(0.5, MACO_CENTER_SD²), Gaussian noise of this std
# plus uniform noise of half its width. Xplique shrinks 50 % → 5 % on 512 px
# images viewed at 224 px; at the sizes rendered here (views the image's own
# size) the last boxes stop at 25 %, i.e. 4× magnified details.
MACO_CROPS = 6
MACO_BOX = (0.5, 0.25)
MACO_BOX_SD = 0.05
MACO_BOX_MIN = 0.05
MACO_CENTER_SD = 0.15
MACO_NOISE = 0.04


def maco_crops(out_size: int, crops: int = MACO_CROPS,
               box: tuple[float, float] = MACO_BOX, noise: float = MACO_NOISE,
               fill=FILL_NOISE) -> Transform:
  """MaCo's views: ``crops`` random square crops per step, ``[K, s, s, C]``.

  Each crop's side is ``N(b, MACO_BOX_SD²)`` of the image side (clipped to
  [MACO_BOX_MIN, 1]), where ``b`` shrinks linearly from ``box[0]`` at the
  first step to ``box[1]`` at the last; its centre is ``N(0.5, 0.15²)`` in
  image coordinates. Each crop is resampled bilinearly onto ``out_size``
  pixels (what falls outside the image takes ``fill``), then Gaussian noise
  of std ``noise`` and uniform noise of width ``noise`` are added. Usable with
  any parameterization.
  """
  _check_fill(fill)

  def apply(key, img, progress):
    h, w, c = img.shape
    k_box, k_centre, k_noise, k_uniform, k_fill = jax.random.split(key, 5)
    mean = box[0] + (box[1] - box[0]) * progress
    sides = jnp.clip(mean + MACO_BOX_SD * jax.random.normal(k_box, (crops,)),
                     MACO_BOX_MIN, 1.0)
    centres = MACO_CENTER_SD * jax.random.normal(k_centre, (crops, 2))
    offsets = centres * jnp.asarray([h, w], jnp.float32)   # from the image centre

    def one(side, offset, k):
      matrix = jnp.diag(side * jnp.asarray([h, w], jnp.float32) / out_size)
      value = _fill_value(k, fill, (out_size, out_size, c), img.dtype)
      return affine(img, matrix, offset, (out_size, out_size), value)
    views = jax.vmap(one)(sides, offsets, jax.random.split(k_fill, crops))
    views = views + noise * jax.random.normal(k_noise, views.shape)
    return views + noise * (jax.random.uniform(k_uniform, views.shape) - 0.5)
  return scheduled(apply)


PRESETS = ("standard", "distill2017", "atlas", "atlas_notebook", "maco", "none")


def preset(name: str, size: int, alpha: bool = False) -> Transform:
  """The composed preset ``name`` for ``size``-pixel images.

  ``name`` may also be registered with
  :func:`atlasjax.optvis.registry.register_transforms` (or be a
  ``"module:factory"`` import path): ``factory(size, alpha=) -> Transform``.
  """
  if name == "standard":
    ts = standard()
  elif name == "distill2017":
    ts = distill2017(size)
  elif name == "atlas":
    return compose(*atlas(size, alpha))
  elif name == "atlas_notebook":
    return compose(*atlas_notebook(alpha))
  elif name == "maco":
    if alpha:
      raise ValueError("the maco transforms preset has no alpha compositing; "
                       "use alpha=False")
    return maco_crops(size)
  elif name == "none":
    ts = []
  else:
    # A registered (or "module:factory") transforms factory.
    from atlasjax.optvis import registry   # registry is imported lazily by design
    return registry.lookup("transforms", name)(size, alpha=alpha)
  if alpha:
    ts = [collapse_alpha_random()] + ts
  return compose(*ts)


__all__ = [
    "Transform", "compose", "identity", "pad", "jitter", "affine",
    "random_affine", "random_scale", "random_rotate", "crop_or_pad_to",
    "collapse_alpha_random", "standard", "distill2017", "atlas",
    "atlas_notebook", "atlas_view_size", "preset", "PRESETS", "FILLS",
    "maco_crops", "scheduled", "at_progress",
]
