"""Natural-image Fourier magnitudes, the fixed half of MaCo's parameterization.

MaCo (Fel et al., NeurIPS 2023) renders an image as ``irfft2(M · e^{iφ})``
where the magnitude ``M`` is the *mean* ``|rfft2|`` of natural images and only
the phase ``φ`` is optimised. This module estimates ``M`` from a folder of
photos, per channel, in the decorrelated colour space the parameterization
works in, and resizes it to any render size:

* :func:`decorrelate` maps RGB in [0, 1] to the coordinates that
  :func:`atlasjax.optvis.param.decorrelate_color` maps back (the inverse of
  Lucid's normalized colour-correlation matrix). The spectrum is taken of this
  *linear* image, not of its logit: the sigmoid that follows in the
  parameterization is close to linear over most pixels, while the logit of
  saturated pixels would dominate the high frequencies.
* :func:`estimate` streams photos (shorter side resized to ``size``, centre
  crop) and averages ``|rfft2|`` per channel: ``[3, size, size // 2 + 1]``.
* :func:`resize` bilinearly resamples a magnitude to another image size, as
  Xplique and horama do; the overall scale is irrelevant because the
  parameterization standardizes the image.
* :func:`default_magnitude` is the estimate from the sample photos
  (``$ATLASJAX_DATA/imagenet-sample``), computed once and cached in the
  atlasjax cache folder; it is never downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
from typing import Callable, Sequence

import numpy as np

from atlasjax import data as data_lib
from atlasjax import images as images_lib
from atlasjax.optvis import param as param_lib

# Side of the square centre crops the magnitude is estimated at.
ESTIMATE_SIZE = 256
# Version of the estimate's recipe; part of the cache file name.
_CACHE_VERSION = 1


def decorrelate(rgb: np.ndarray) -> np.ndarray:
  """RGB ``[..., 3]`` to decorrelated colour coordinates (``decorrelate_color⁻¹``)."""
  matrix = np.asarray(param_lib.COLOR_CORRELATION_NORMALIZED, np.float64)
  # decorrelate_color computes t @ C.T, so t = rgb @ inv(C.T).
  return (np.asarray(rgb, np.float64) @ np.linalg.inv(matrix.T)).astype(np.float32)


def magnitude_of(images: np.ndarray) -> np.ndarray:
  """Mean ``|rfft2|`` of decorrelated ``[N, H, W, 3]`` images: ``[3, H, W//2+1]``."""
  t = np.moveaxis(decorrelate(images), -1, 1)
  return np.abs(np.fft.rfft2(t)).mean(axis=0).astype(np.float32)


def _square(path: str, size: int) -> np.ndarray:
  image = images_lib.load_pil(path)
  return images_lib.eval_preprocess(image, resize=size, crop=size)


def estimate(paths: Sequence[str], size: int = ESTIMATE_SIZE,
             progress: Callable[[int, int], None] | None = None) -> np.ndarray:
  """Mean decorrelated ``|rfft2|`` of ``paths``, ``[3, size, size // 2 + 1]``.

  Args:
    paths: image files (any format Pillow reads).
    size: each photo's shorter side is resized to ``size`` and its centre
      ``size × size`` kept.
    progress: ``(done, total) -> None``, called after each photo.
  """
  if not paths:
    raise ValueError("spectrum.estimate: no images given; pass a folder or a "
                     "list of image files")
  total = np.zeros((3, size, size // 2 + 1), np.float64)
  for i, path in enumerate(paths):
    total += magnitude_of(_square(path, size)[None])
    if progress is not None:
      progress(i + 1, len(paths))
  return (total / len(paths)).astype(np.float32)


def estimate_folder(folder: os.PathLike | str, size: int = ESTIMATE_SIZE,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
  """:func:`estimate` over every image under ``folder``."""
  return estimate(images_lib.list_images(folder), size, progress)


def resize(magnitude: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
  """``[C, h, w']`` magnitude resampled for ``size`` images: ``[C, H, W//2+1]``.

  Bilinear with antialiasing (as horama; Xplique's ``tf.image.resize`` is
  bilinear too); rows and columns keep their order, so the zero frequency
  stays at row 0 and column 0 and the negative row frequencies at the end.
  """
  import jax   # local: keeps this module importable for NumPy-only tools
  h, w = param_lib.size_hw(size)
  shape = (magnitude.shape[0], h, w // 2 + 1)
  if tuple(magnitude.shape) == shape:
    return np.asarray(magnitude, np.float32)
  out = jax.image.resize(np.asarray(magnitude, np.float32), shape, "linear",
                         antialias=True)
  return np.asarray(out, np.float32)


def _fingerprint(paths: Sequence[str]) -> str:
  digest = hashlib.sha256()
  for p in paths:
    digest.update(f"{pathlib.Path(p).name}:{os.path.getsize(p)}\n".encode())
  return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def _default_full(folder: str) -> np.ndarray:
  paths = images_lib.list_images(folder)
  cache = (data_lib.cache_dir() / "maco" /
           f"spectrum_v{_CACHE_VERSION}_{ESTIMATE_SIZE}_{_fingerprint(paths)}.npy")
  if cache.exists():
    return np.load(cache)
  magnitude = estimate(paths, ESTIMATE_SIZE)
  cache.parent.mkdir(parents=True, exist_ok=True)
  tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
  with open(tmp, "wb") as f:
    np.save(f, magnitude)
  os.replace(tmp, cache)   # atomic: concurrent runs never read half a file
  return magnitude


def default_magnitude(size: int | Sequence[int] = ESTIMATE_SIZE,
                      data: os.PathLike | str | None = None) -> np.ndarray:
  """The sample photos' magnitude resized for ``size`` images (cached on disk).

  Args:
    size: render side, or ``(height, width)``.
    data: the data root (default: ``$ATLASJAX_DATA`` and the usual places,
      see :func:`atlasjax.data.sample_dir`).
  """
  folder = data_lib.sample_dir(data)
  return resize(_default_full(str(folder)), size)


def loglog_slope(magnitude: np.ndarray) -> float:
  """Slope of ``log mean |F|`` against ``log f`` (radial, 1 … Nyquist cycles).

  Natural images have ``|F| ∝ 1/f^α`` with ``α ≈ 1`` (Field 1987); the slope
  is ``-α``. Frequencies are in cycles per image, so spectra estimated at
  different sizes are comparable.
  """
  c, h, fw = magnitude.shape
  fy = np.fft.fftfreq(h)[:, None] * h
  fx = np.arange(fw)[None, :]
  radius = np.rint(np.sqrt(fx ** 2 + fy ** 2)).astype(int)
  mean = np.asarray(magnitude, np.float64).mean(axis=0)
  radii = np.arange(1, min(h // 2, fw - 1) + 1)
  profile = np.array([mean[radius == r].mean() for r in radii])
  slope, _ = np.polyfit(np.log(radii), np.log(profile), 1)
  return float(slope)


__all__ = ["ESTIMATE_SIZE", "decorrelate", "magnitude_of", "estimate",
           "estimate_folder", "resize", "default_magnitude", "loglog_slope"]
