"""Small, reusable image helpers: scaling, colormaps, overlays, grids, PNGs.

Everything here works on host NumPy arrays (JAX arrays are converted) with
images as ``[H, W, 3]`` float RGB in [0, 1] or ``[H, W]`` grayscale maps.
Functions are pure except the ``save_*`` ones, which write a file.

  heat = plotting.heatmap_overlay(photo, cam, cmap="jet")
  sheet = plotting.grid(tiles, ncols=8, pad=2)
  plotting.save_png(sheet, "/tmp/filters.png")
  plotting.save_contact_sheet(tiles, "/tmp/examples.png", titles=names)
"""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

import matplotlib
import numpy as np
from PIL import Image

matplotlib.use("Agg")  # Files only; no display is ever needed.
from matplotlib import pyplot as plt  # noqa: E402  (after the backend choice)

DEFAULT_CMAP = "jet"
OVERLAY_ALPHA = 0.5
PAD_VALUE = 1.0            # white separators between grid tiles
_EPS = 1e-12
_DPI = 100


def as_numpy(x) -> np.ndarray:
  """``x`` as a float32 NumPy array."""
  return np.asarray(x, dtype=np.float32)


def normalize(x, percentile: float | None = None, symmetric: bool = False,
              axis=None) -> np.ndarray:
  """Scales ``x`` to [0, 1].

  Args:
    x: any array.
    percentile: if set (e.g. 99), the upper end is this percentile instead of the
      maximum (and the lower end ``100 - percentile``), then values are clipped;
      useful for saliency maps with a few extreme pixels.
    symmetric: map ``[-m, m]`` to [0, 1] with zero at 0.5 (``m = max |x|``)
      instead of ``[min, max]``.
    axis: axes reduced to find the range (``None``: the whole array); e.g.
      ``axis=(1, 2, 3)`` normalises each image of a batch separately.
  """
  x = as_numpy(x)
  if symmetric:
    if percentile is None:
      m = np.abs(x).max(axis=axis, keepdims=True)
    else:
      m = np.percentile(np.abs(x), percentile, axis=axis, keepdims=True)
    return np.clip(0.5 + x / (2 * np.maximum(m, _EPS)), 0.0, 1.0)
  if percentile is None:
    lo = x.min(axis=axis, keepdims=True)
    hi = x.max(axis=axis, keepdims=True)
  else:
    lo = np.percentile(x, 100 - percentile, axis=axis, keepdims=True)
    hi = np.percentile(x, percentile, axis=axis, keepdims=True)
  return np.clip((x - lo) / np.maximum(hi - lo, _EPS), 0.0, 1.0)


def to_uint8(image) -> np.ndarray:
  """[0, 1] floats to uint8 (rounded, clipped)."""
  return np.round(np.clip(as_numpy(image), 0.0, 1.0) * 255).astype(np.uint8)


def gray_to_rgb(image) -> np.ndarray:
  """``[H, W]`` or ``[H, W, 1]`` repeated to ``[H, W, 3]``; RGB unchanged."""
  image = as_numpy(image)
  if image.ndim == 2:
    return np.repeat(image[..., None], 3, axis=-1)
  if image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  return image


def resize(image, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
  """Resizes a float ``[H, W]`` or ``[H, W, C]`` array to ``size = (h, w)``.

  Bilinear (antialiased when shrinking) unless ``nearest``; values are not
  rescaled, so this works for heatmaps of any range.
  """
  image = as_numpy(image)
  h, w = size
  if image.shape[:2] == (h, w):
    return image
  method = Image.NEAREST if nearest else Image.BILINEAR
  if image.ndim == 2:
    return np.asarray(Image.fromarray(image, mode="F").resize((w, h), method))
  channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]),
                                         mode="F").resize((w, h), method))
              for c in range(image.shape[-1])]
  return np.stack(channels, axis=-1)


def upscale(image, factor: int) -> np.ndarray:
  """Nearest-neighbour enlargement by an integer factor (crisp pixels)."""
  image = as_numpy(image)
  return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def colorize(values, cmap: str = DEFAULT_CMAP) -> np.ndarray:
  """``[H, W]`` values in [0, 1] to ``[H, W, 3]`` RGB through a matplotlib colormap."""
  colormap = matplotlib.colormaps[cmap]
  return colormap(np.clip(as_numpy(values), 0.0, 1.0))[..., :3].astype(np.float32)


def heatmap_overlay(image, heat, cmap: str = DEFAULT_CMAP,
                    alpha: float = OVERLAY_ALPHA,
                    normalize_heat: bool = True) -> np.ndarray:
  """Blends a coloured heatmap over ``image``.

  Args:
    image: ``[H, W, 3]`` RGB in [0, 1].
    heat: ``[h, w]`` map at any resolution (e.g. a 7×7 CAM); it is resized
      bilinearly to the image size.
    cmap: a matplotlib colormap name.
    alpha: opacity of the heatmap, scaled by the heat itself so cold regions
      keep the photo visible.
    normalize_heat: min-max scale ``heat`` first; if False it must be in [0, 1].

  Returns:
    ``[H, W, 3]`` RGB in [0, 1].
  """
  image = gray_to_rgb(image)
  heat = as_numpy(heat)
  if normalize_heat:
    heat = normalize(heat)
  heat = np.clip(resize(heat, image.shape[:2]), 0.0, 1.0)
  colour = colorize(heat, cmap)
  weight = alpha * (0.3 + 0.7 * heat)[..., None]
  return np.clip((1 - weight) * image + weight * colour, 0.0, 1.0)


def grid(images: Sequence[np.ndarray] | np.ndarray, ncols: int | None = None,
         pad: int = 1, pad_value: float = PAD_VALUE) -> np.ndarray:
  """Tiles same-sized images row-major into one array.

  Image ``i`` sits at row ``i // ncols``, column ``i % ncols``, at pixel offset
  ``(pad + row * (h + pad), pad + col * (w + pad))``. Empty cells and
  separators are ``pad_value``.

  Args:
    images: ``[N, h, w]`` or ``[N, h, w, C]`` (or a list of such arrays).
    ncols: tiles per row; default ``ceil(sqrt(N))``.
    pad: separator width in pixels (also around the border).

  Returns:
    ``[rows * (h + pad) + pad, ncols * (w + pad) + pad(, C)]``.
  """
  images = np.stack([as_numpy(i) for i in images]) if not isinstance(
      images, np.ndarray) else as_numpy(images)
  n, h, w = images.shape[:3]
  if n == 0:
    raise ValueError("grid() needs at least one image")
  ncols = ncols or int(np.ceil(np.sqrt(n)))
  nrows = -(-n // ncols)
  shape = (nrows * (h + pad) + pad, ncols * (w + pad) + pad) + images.shape[3:]
  out = np.full(shape, pad_value, np.float32)
  for i in range(n):
    r, c = divmod(i, ncols)
    top, left = pad + r * (h + pad), pad + c * (w + pad)
    out[top:top + h, left:left + w] = images[i]
  return out


def hstack(images: Sequence[np.ndarray], pad: int = 4,
           pad_value: float = PAD_VALUE) -> np.ndarray:
  """Places RGB images (grayscale is converted) side by side, resized to the
  first one's height."""
  images = [gray_to_rgb(i) for i in images]
  h = images[0].shape[0]
  images = [i if i.shape[0] == h else
            resize(i, (h, round(i.shape[1] * h / i.shape[0]))) for i in images]
  return _row(images, pad, pad_value)


def _row(images: Sequence[np.ndarray], pad: int,
             pad_value: float) -> np.ndarray:
  h = images[0].shape[0]
  width = sum(i.shape[1] for i in images) + pad * (len(images) + 1)
  out = np.full((h + 2 * pad, width, 3), pad_value, np.float32)
  left = pad
  for image in images:
    out[pad:pad + h, left:left + image.shape[1]] = image
    left += image.shape[1] + pad
  return out


def save_png(image, path: os.PathLike | str) -> pathlib.Path:
  """Writes ``[H, W]`` or ``[H, W, 3]`` floats in [0, 1] as an 8-bit PNG."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(to_uint8(gray_to_rgb(image))).save(path)
  return path


def save_contact_sheet(images: Sequence[np.ndarray], path: os.PathLike | str,
                       titles: Sequence[str] | None = None,
                       ncols: int | None = None, tile_inches: float = 2.0,
                       suptitle: str | None = None,
                       cmap: str = "gray") -> pathlib.Path:
  """Saves images with captions as a matplotlib figure (a contact sheet).

  Images may differ in size; grayscale ones are drawn with ``cmap``.
  """
  n = len(images)
  ncols = ncols or int(np.ceil(np.sqrt(n)))
  nrows = -(-n // ncols)
  fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                           figsize=(tile_inches * ncols,
                                    tile_inches * nrows + (0.4 if suptitle else 0)))
  try:
    for i, ax in enumerate(axes.flat):
      ax.axis("off")
      if i >= n:
        continue
      image = as_numpy(images[i])
      ax.imshow(np.clip(image, 0, 1), cmap=cmap if image.ndim == 2 else None,
                vmin=0, vmax=1, interpolation="nearest")
      if titles is not None:
        ax.set_title(titles[i], fontsize=8)
    if suptitle:
      fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
  finally:
    plt.close(fig)
  return path
