"""Image parameterizations as ``(init, to_rgb)`` pairs, like optax's transforms.

An :class:`ImageParam` describes *what the optimiser sees*: ``init(key)`` returns
the raw parameters (any pytree) and ``to_rgb(raw)`` maps them to a batch of
images ``[B, H, W, 3]`` with values in [0, 1] (``[B, H, W, 4]`` with an alpha
channel when built with ``alpha=True``). Both are pure; the renderer vmaps
them over items, so a single ``ImageParam`` describes one item's ``B`` images
(``B = 1`` unless several images are optimised jointly, e.g. for diversity or
interpolation).

The building blocks return *unconstrained* values (:func:`pixel_image`,
:func:`fft_image`, :func:`laplacian_pyramid`, :func:`lowres_tensor`);
:func:`to_valid_rgb` applies Lucid's colour decorrelation and sigmoid, and
:func:`image` puts them together with Lucid's defaults (FFT, decorrelated,
sigmoid). :func:`cppn` and :func:`shared_separate` are complete
parameterizations of their own.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

# Initial standard deviation of pixel / spectral / low-resolution parameters.
DEFAULT_SD = 0.01
# Spectral power decay: amplitudes scale as 1 / f ** SPECTRUM_DECAY_POWER.
SPECTRUM_DECAY_POWER = 1.0
# Lucid divides the inverse FFT by 4 so that sigmoid inputs start small.
FFT_OUTPUT_SCALE = 1.0 / 4.0
# Square root of the ImageNet colour covariance (Lucid's
# ``color_correlation_svd_sqrt``); columns are the principal colour directions.
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02],
     [0.27, 0.00, -0.05],
     [0.27, -0.09, 0.03]], np.float32)
# ... normalised by its largest column norm, as Lucid does.
MAX_NORM_SVD_SQRT = float(np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0)))
COLOR_CORRELATION_NORMALIZED = COLOR_CORRELATION_SVD_SQRT / MAX_NORM_SVD_SQRT
# Mean ImageNet colour, added when decorrelating without a sigmoid.
COLOR_MEAN = np.asarray([0.48, 0.46, 0.41], np.float32)
# Laplacian pyramid: number of levels (each half the resolution of the last).
PYRAMID_LEVELS = 4
# CPPN defaults (Lucid's ``cppn``): width, depth, and the RMS of atan(N(0, 1))
# and atan(N(0, 1))² that normalise the composite activation.
CPPN_HIDDEN = 24
CPPN_LAYERS = 8
CPPN_ATAN_RMS = 0.67
CPPN_ATAN_SQ_RMS = 0.6
CPPN_COORD_RANGE = math.sqrt(3.0)   # uniform on ±√3 has unit variance
# MaCo: the random phase's initial standard deviation (Xplique and horama use
# N(0, 1)), and the epsilon of its standardizations (Xplique's).
MACO_PHASE_SD = 1.0
MACO_EPS = 1e-5


class ImageParam(NamedTuple):
  """A parameterization: ``init(key) -> raw``, ``to_rgb(raw) -> [B, H, W, C]``.

  ``to_rgb`` of a complete parameterization returns values in [0, 1] with
  RGB in the first three channels (and alpha in a fourth when requested).
  Building blocks such as :func:`fft_image` return unconstrained values.
  """
  init: Callable[[jax.Array], PyTree]
  to_rgb: Callable[[PyTree], jax.Array]


def output_shape(p: ImageParam) -> tuple[int, ...]:
  """Static shape of ``p.to_rgb(p.init(key))``, without running it."""
  raw = jax.eval_shape(p.init, jax.random.PRNGKey(0))
  return tuple(jax.eval_shape(p.to_rgb, raw).shape)


def size_hw(size: int | Sequence[int]) -> tuple[int, int]:
  """``(height, width)`` of an image size given as one side or a pair."""
  if isinstance(size, int):
    return size, size
  h, w = size
  return int(h), int(w)


# ----------------------------------------------------------------------------
# Unconstrained spatial parameterizations.

def pixel_image(size, batch: int = 1, channels: int = 3,
                sd: float = DEFAULT_SD) -> ImageParam:
  """Pixels themselves, initialised from ``N(0, sd²)``."""
  h, w = size_hw(size)
  return ImageParam(
      init=lambda key: sd * jax.random.normal(key, (batch, h, w, channels)),
      to_rgb=lambda raw: raw)


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
  """Frequency magnitude (cycles/pixel) of each ``rfft2`` coefficient, ``[h, fw]``.

  For odd ``w`` Lucid keeps one extra column (``w // 2 + 2``) and crops the
  inverse transform; we do the same so results match.
  """
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.fftfreq(w)[: w // 2 + (2 if w % 2 else 1)]
  return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int,
                   decay_power: float = SPECTRUM_DECAY_POWER) -> np.ndarray:
  """``1 / max(f, 1/max(w, h)) ** decay_power · √(w·h)`` per coefficient."""
  freqs = rfft2d_freqs(h, w)
  scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay_power
  return (scale * np.sqrt(w * h)).astype(np.float32)


def fft_image(size, batch: int = 1, channels: int = 3, sd: float = DEFAULT_SD,
              decay_power: float = SPECTRUM_DECAY_POWER) -> ImageParam:
  """Lucid's spectral parameterization.

  Raw parameters are the real and imaginary parts of an ``rfft2`` spectrum,
  ``[B, C, 2, h, fw]`` from ``N(0, sd²)``. ``to_rgb`` scales each coefficient by
  :func:`spectrum_scale` (so every frequency band starts with equal energy and
  gradient steps are whitened), applies the inverse real FFT, crops to
  ``[h, w]`` and multiplies by :data:`FFT_OUTPUT_SCALE`.
  """
  h, w = size_hw(size)
  # The inverse FFT is linear, so Lucid's output scale is folded into the
  # spectrum scale once, here, and both multiply the real and imaginary parts
  # (real × real) before they become one complex array: no per-step complex
  # multiply and no pass over the image for the /4.
  scale = spectrum_scale(h, w, decay_power) * np.float32(FFT_OUTPUT_SCALE)
  fh, fw = scale.shape
  n_w = 2 * (fw - 1)   # irfft length; w, or w + 1 for odd w (then cropped)

  def init(key):
    return sd * jax.random.normal(key, (batch, channels, 2, fh, fw))

  def to_rgb(raw):
    spectrum = jax.lax.complex(raw[:, :, 0] * scale, raw[:, :, 1] * scale)
    img = jnp.fft.irfft2(spectrum, s=(h, n_w), axes=(-2, -1))
    if n_w != w:
      img = img[..., :w]
    return jnp.transpose(img, (0, 2, 3, 1))

  return ImageParam(init, to_rgb)


def lowres_tensor(shape: Sequence[int], underlying_shape: Sequence[int],
                  sd: float = DEFAULT_SD) -> ImageParam:
  """A tensor of ``shape`` bilinearly upsampled from ``underlying_shape``.

  Every axis may be resized, including the batch axis (a 2-frame tensor
  stretched over 6 frames varies smoothly across them).
  """
  shape, underlying_shape = tuple(shape), tuple(underlying_shape)
  return ImageParam(
      init=lambda key: sd * jax.random.normal(key, underlying_shape),
      to_rgb=lambda raw: jax.image.resize(raw, shape, "linear"))


def laplacian_pyramid(size, batch: int = 1, channels: int = 3,
                      levels: int = PYRAMID_LEVELS,
                      sd: float = DEFAULT_SD) -> ImageParam:
  """Sum of ``levels`` tensors at resolutions ``size / 2**k``, upsampled."""
  h, w = size_hw(size)
  shape = (batch, h, w, channels)
  parts = [lowres_tensor(shape, (batch, max(1, h // 2 ** k),
                                 max(1, w // 2 ** k), channels), sd)
           for k in range(levels)]
  return sum_params(parts)


def sum_params(parts: Sequence[ImageParam]) -> ImageParam:
  """The sum of several parameterizations with equal output shapes."""
  parts = tuple(parts)

  def init(key):
    return [p.init(k) for p, k in zip(parts, jax.random.split(key, len(parts)))]

  def to_rgb(raws):
    out = parts[0].to_rgb(raws[0])
    for p, raw in zip(parts[1:], raws[1:]):
      out = out + p.to_rgb(raw)
    return out

  return ImageParam(init, to_rgb)


def _standardize(x: jax.Array) -> jax.Array:
  """Zero mean, unit standard deviation over each item's axes 1…ndim."""
  axes = tuple(range(1, x.ndim))
  x = x - x.mean(axis=axes, keepdims=True)
  return x / (x.std(axis=axes, keepdims=True) + MACO_EPS)


def maco_image(size, magnitude, batch: int = 1, phase: jax.Array | None = None,
               standardize: bool = True,
               sd: float = MACO_PHASE_SD) -> ImageParam:
  """MaCo's magnitude-constrained spectral image (Fel et al., NeurIPS 2023).

  Raw parameters are the phase only, ``[B, C, h, w // 2 + 1]``; ``to_rgb``
  returns the unconstrained (decorrelated, pre-sigmoid) image:

  1. the phase is standardized (zero mean, unit deviation per image), so the
     optimiser cannot collapse it;
  2. the spectrum is ``magnitude · (cos φ + i sin φ)``: its modulus is fixed;
  3. the inverse real FFT gives the image, standardized per image.

  :func:`finish` then recorrelates the colours and applies the sigmoid, as
  Xplique's and horama's constructions do.

  Args:
    size: side, or ``(height, width)``.
    magnitude: ``[C, h, w // 2 + 1]`` (e.g.
      :func:`atlasjax.optvis.spectrum.default_magnitude`), or ``[B, C, ...]``.
    batch: images per item.
    phase: initial phase (broadcast to ``[B, C, h, w // 2 + 1]``) instead of
      ``N(0, sd²)``; with ``standardize=False`` and the magnitude and phase
      of an image's ``rfft2``, ``to_rgb(init)`` is that image exactly.
    standardize: both standardizations of the construction; False keeps the
      magnitude's own scale (feature accentuation starts from a photo).
    sd: standard deviation of the random initial phase.
  """
  h, w = size_hw(size)
  magnitude = jnp.asarray(magnitude, jnp.float32)
  channels = magnitude.shape[-3]
  shape = (batch, channels, h, w // 2 + 1)
  if magnitude.shape[-2:] != shape[-2:]:
    raise ValueError(f"maco_image: a {h}×{w} image needs a magnitude of shape "
                     f"[{channels}, {h}, {w // 2 + 1}], got {magnitude.shape}; "
                     "resize it with atlasjax.optvis.spectrum.resize")

  def init(key):
    if phase is not None:
      return jnp.broadcast_to(jnp.asarray(phase, jnp.float32), shape)
    return sd * jax.random.normal(key, shape)

  def to_rgb(raw):
    phi = _standardize(raw) if standardize else raw
    spectrum = jax.lax.complex(jnp.cos(phi) * magnitude, jnp.sin(phi) * magnitude)
    img = jnp.fft.irfft2(spectrum, s=(h, w), axes=(-2, -1))
    if standardize:
      img = _standardize(img)
    return jnp.transpose(img, (0, 2, 3, 1))

  return ImageParam(init, to_rgb)


# MaCo's figures show the image over a transparency: the accumulated gradient
# averaged over channels, clipped at this percentile and scaled to [0, 1].
MACO_ALPHA_PERCENTILE = 80.0


def transparency(image, alpha_map, percentile: float = MACO_ALPHA_PERCENTILE
                 ) -> np.ndarray:
  """``[H, W, 4]``: ``image``'s RGB with MaCo's transparency as alpha.

  ``alpha_map`` is ``RenderResult.alpha_map`` for this image (``Σ |∂L/∂x|``,
  ``[H, W, C]``): it is averaged over channels, clipped at its
  ``percentile``-th percentile and divided by its maximum, as in the paper's
  figures (and horama's ``plot_maco``).
  """
  alpha = np.asarray(alpha_map, np.float32).mean(-1, keepdims=True)
  alpha = np.minimum(alpha, np.percentile(alpha, percentile))
  alpha = alpha / max(float(alpha.max()), np.finfo(np.float32).tiny)
  return np.concatenate([np.asarray(image, np.float32)[..., :3], alpha], -1)


# ----------------------------------------------------------------------------
# Colour.

def decorrelate_color(t: jax.Array) -> jax.Array:
  """Maps decorrelated colour coordinates to RGB (last axis of size 3).

  A ``[..., 3] @ [3, 3]`` dot. Three broadcast multiply-adds of last-axis
  slices fuse better forwards but their gradient (pads of every slice) was
  4× slower on XLA:CPU (bench/RESULTS.md, profile), so the dot stays.
  """
  return t @ jnp.asarray(COLOR_CORRELATION_NORMALIZED).T


def constrain_l_inf(x: jax.Array) -> jax.Array:
  """``x / max(1, |x|)``: Lucid's soft clip to [-1, 1]."""
  return x / jnp.maximum(1.0, jnp.abs(x))


def to_valid_rgb(t: jax.Array, decorrelate: bool = True,
                 sigmoid: bool = True) -> jax.Array:
  """Unconstrained ``[..., 3]`` values to RGB in [0, 1] (Lucid's ``to_valid_rgb``)."""
  if decorrelate:
    t = decorrelate_color(t)
  if decorrelate and not sigmoid:
    t = t + jnp.asarray(COLOR_MEAN)
  if sigmoid:
    return jax.nn.sigmoid(t)
  return constrain_l_inf(2.0 * t - 1.0) / 2.0 + 0.5


def finish(raw: ImageParam, decorrelate: bool = True, sigmoid: bool = True,
           alpha: bool = False) -> ImageParam:
  """Turns an unconstrained parameterization into a complete one.

  With ``alpha`` the raw tensor has 4 channels; the fourth goes through a
  sigmoid and is appended to the RGB output.
  """
  def to_rgb(params):
    t = raw.to_rgb(params)
    rgb = to_valid_rgb(t[..., :3], decorrelate, sigmoid)
    if not alpha:
      return rgb
    return jnp.concatenate([rgb, jax.nn.sigmoid(t[..., 3:4])], axis=-1)
  return ImageParam(raw.init, to_rgb)


KINDS = ("fft", "pixel", "laplacian", "cppn", "maco")


def image(size, batch: int = 1, kind: str = "fft", decorrelate: bool = True,
          sigmoid: bool = True, alpha: bool = False,
          sd: float = DEFAULT_SD) -> ImageParam:
  """A complete parameterization; Lucid's ``param.image`` defaults.

  Args:
    size: side length, or ``(height, width)``.
    batch: images optimised together per item.
    kind: ``"fft"`` (default), ``"pixel"``, ``"laplacian"``, ``"cppn"`` or
      ``"maco"`` (:func:`maco_image` with the sample photos' magnitude,
      :func:`atlasjax.optvis.spectrum.default_magnitude`), or a name
      registered with :func:`atlasjax.optvis.registry.register_param` (or a
      ``"module:factory"`` import path), called as
      ``factory(size, batch, decorrelate=, alpha=)``.
    decorrelate: apply the colour decorrelation (ignored for ``cppn``).
    sigmoid: squash with a sigmoid, else Lucid's soft clip.
    alpha: add an alpha channel (output ``[B, H, W, 4]``).
    sd: initial standard deviation (not used by ``maco``: its phase starts
      from ``N(0, MACO_PHASE_SD²)``, the scale its standardization expects).
  """
  channels = 4 if alpha else 3
  if kind in ("cppn", "maco") and alpha:
    raise ValueError(f"the {kind} parameterization has no alpha channel; "
                     "use alpha=False")
  if kind == "maco":
    from atlasjax.optvis import spectrum   # spectrum imports this module
    raw = maco_image(size, spectrum.default_magnitude(size), batch)
    return finish(raw, decorrelate, sigmoid)
  if kind == "cppn":
    return cppn(size, batch)
  if kind == "fft":
    raw = fft_image(size, batch, channels, sd)
  elif kind == "pixel":
    raw = pixel_image(size, batch, channels, sd)
  elif kind == "laplacian":
    raw = laplacian_pyramid(size, batch, channels, sd=sd)
  else:
    # A registered (or "module:factory") parameterization.
    from atlasjax.optvis import registry   # registry is imported lazily by design
    return registry.lookup("param", kind)(size, batch, decorrelate=decorrelate,
                                          alpha=alpha)
  return finish(raw, decorrelate, sigmoid, alpha)


# ----------------------------------------------------------------------------
# Compositional pattern-producing network.

def _composite_activation(x):
  x = jnp.arctan(x)
  return jnp.concatenate([x / CPPN_ATAN_RMS, x * x / CPPN_ATAN_SQ_RMS], axis=-1)


def cppn(size, batch: int = 1, hidden: int = CPPN_HIDDEN,
         layers: int = CPPN_LAYERS) -> ImageParam:
  """Lucid's CPPN: an MLP from (x, y) coordinates to RGB, one per image.

  ``layers`` dense layers of ``hidden`` units with variance-scaling
  initialisation and the composite ``[atan/0.67, atan²/0.6]`` activation, then
  a zero-initialised sigmoid output (the image starts uniform grey). Lucid
  recommends a smaller learning rate (~0.005) for this parameterization.
  """
  h, w = size_hw(size)
  ys = jnp.linspace(-CPPN_COORD_RANGE, CPPN_COORD_RANGE, h)
  xs = jnp.linspace(-CPPN_COORD_RANGE, CPPN_COORD_RANGE, w)
  yy, xx = jnp.meshgrid(ys, xs, indexing="ij")
  coords = jnp.stack([xx, yy], axis=-1)   # [h, w, 2]

  def init_one(key):
    weights, fan_in = [], 2
    keys = jax.random.split(key, layers)
    for k in keys:
      weights.append({
          "w": jax.random.normal(k, (fan_in, hidden)) / math.sqrt(fan_in),
          "b": jnp.zeros((hidden,))})
      fan_in = 2 * hidden
    weights.append({"w": jnp.zeros((fan_in, 3)), "b": jnp.zeros((3,))})
    return weights

  def rgb_one(weights):
    x = coords
    for layer in weights[:-1]:
      x = _composite_activation(x @ layer["w"] + layer["b"])
    return jax.nn.sigmoid(x @ weights[-1]["w"] + weights[-1]["b"])

  return ImageParam(
      init=lambda key: jax.vmap(init_one)(jax.random.split(key, batch)),
      to_rgb=jax.vmap(rgb_one))


# ----------------------------------------------------------------------------
# Shared + separate, for interpolation.

# (batch, downsampling factor) of each shared low-resolution component, as in
# Lucid's interpolation notebook: smooth across space, and (for batch 2)
# smoothly varying across the frames.
SHARED_COMPONENTS = ((1, 2), (1, 4), (1, 8), (2, 8), (1, 16), (2, 16))


def shared_separate(size, frames: int,
                    components: Sequence[tuple[int, int]] = SHARED_COMPONENTS,
                    decorrelate: bool = True, sd: float = DEFAULT_SD) -> ImageParam:
  """Per-frame FFT images plus low-resolution tensors shared by all frames.

  The shared parts make neighbouring frames of an interpolation render the
  same things in the same places; each frame still has its own spectrum.
  """
  h, w = size_hw(size)
  shape = (frames, h, w, 3)
  parts = [fft_image((h, w), frames, 3, sd)]
  parts += [lowres_tensor(shape, (b, max(1, h // f), max(1, w // f), 3), sd)
            for b, f in components]
  return finish(sum_params(parts), decorrelate=decorrelate)


__all__ = [
    "ImageParam", "output_shape", "size_hw", "pixel_image", "fft_image", "lowres_tensor",
    "laplacian_pyramid", "sum_params", "maco_image", "MACO_PHASE_SD",
    "transparency", "rfft2d_freqs", "spectrum_scale",
    "decorrelate_color", "to_valid_rgb", "finish", "image", "cppn",
    "shared_separate", "KINDS", "COLOR_CORRELATION_SVD_SQRT",
    "COLOR_CORRELATION_NORMALIZED", "FFT_OUTPUT_SCALE", "COLOR_MEAN",
]
