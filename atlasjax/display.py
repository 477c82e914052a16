"""Showing and saving results: contact sheets as PNG, in notebooks and files.

A render's images, an atlas or any image array is shown the same way in a
notebook and on disk:

* in Jupyter, a :class:`~atlasjax.optvis.render.RenderResult` (or an
  :class:`~atlasjax.atlas.result.Atlas`) that is the value of a cell shows
  itself through ``_repr_png_``: the images tiled row-major into a
  near-square contact sheet (alpha dropped), white gaps between tiles;
* :class:`Picture` shows anything else the same way (a photo beside its
  caricature, a few images picked from several results);
* :func:`save` writes exactly that picture to a PNG file, atomically (a
  reader never sees half a file, and an interrupted save leaves the old file
  as it was)::

    result = render.render(model, params, make, args=channels)
    display.save(result, "channels.png")          # the sheet the notebook shows
    display.save(result.images[2], "one.png")     # one image
    display.Picture([photo, result.images[0]])    # a cell's value: shown

Only numpy and PIL, so showing a result does not import matplotlib.
"""

from __future__ import annotations

import io
import os
import pathlib

import numpy as np
from PIL import Image

from atlasjax import workdir

# Gap between tiles of a contact sheet, and its colour (white).
SHEET_PAD = 2
SHEET_PAD_VALUE = 1.0
# Ranks of what :func:`as_sheet` accepts: one image (``[H, W]``, ``[H, W, C]``),
# a batch ``[N, H, W, C]``, a batch of image sets ``[N, B, H, W, C]``.
_ONE_GRAY, _ONE, _BATCH, _SETS = 2, 3, 4, 5
_CHANNELS = (1, 3, 4)


def png_bytes(image) -> bytes:
  """``[H, W, 3]`` (or ``[H, W]``) floats in [0, 1] as PNG bytes.

  Values outside [0, 1] are clipped and NaNs shown black.
  """
  a = np.nan_to_num(np.asarray(image, np.float32), nan=0.0)
  a = np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a[..., :3]
  buffer = io.BytesIO()
  Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
      buffer, format="PNG")
  return buffer.getvalue()


def sheet(images) -> np.ndarray:
  """``[N, h, w, C]`` tiled row-major into a near-square contact sheet."""
  images = np.asarray(images, np.float32)[..., :3]
  n, h, w = images.shape[:3]
  cols = int(np.ceil(np.sqrt(n)))
  rows = -(-n // cols)
  out = np.full((rows * (h + SHEET_PAD) + SHEET_PAD,
                 cols * (w + SHEET_PAD) + SHEET_PAD, 3), SHEET_PAD_VALUE,
                np.float32)
  for i in range(n):
    r, c = divmod(i, cols)
    y, x = SHEET_PAD + r * (h + SHEET_PAD), SHEET_PAD + c * (w + SHEET_PAD)
    out[y:y + h, x:x + w] = images[i]
  return out


def _pixels(what) -> np.ndarray:
  """The image array of a result (``.images``), an atlas (``.image()``) or an array."""
  if hasattr(what, "images"):
    what = what.images
  elif callable(getattr(what, "image", None)):
    what = what.image()
  return np.asarray(what, np.float32)


def as_sheet(what) -> np.ndarray:
  """What :func:`save` writes, as ``[H, W, 3]`` floats: one image as it is,
  several tiled by :func:`sheet` (a batch of image sets, ``[N, B, H, W, C]``,
  one tile per image).

  Args:
    what: a :class:`~atlasjax.optvis.render.RenderResult` (its ``images``), an
      :class:`~atlasjax.atlas.result.Atlas` (its ``image()``), or an array
      ``[H, W]``, ``[H, W, C]``, ``[N, H, W, C]`` or ``[N, B, H, W, C]`` with
      ``C`` of 1, 3 or 4 (alpha is dropped), values in [0, 1].

  Raises:
    ValueError: an array of another shape (the message names it).
  """
  a = _pixels(what)
  channels_ok = a.ndim == _ONE_GRAY or (a.ndim >= _ONE and a.shape[-1] in _CHANNELS)
  if not (_ONE_GRAY <= a.ndim <= _SETS and channels_ok and a.size):
    raise ValueError(
        f"cannot show an array of shape {a.shape} as images: give [H, W], "
        "[H, W, C], [N, H, W, C] or [N, B, H, W, C] with C of 1, 3 or 4")
  if a.ndim >= _ONE and a.shape[-1] == 1:
    a = np.repeat(a, 3, axis=-1)
  if a.ndim <= _ONE:
    return a if a.ndim == _ONE_GRAY else a[..., :3]
  return sheet(a.reshape((-1,) + a.shape[-3:]))


def sheet_png(what) -> bytes:
  """:func:`as_sheet` of ``what`` as PNG bytes (what ``_repr_png_`` shows)."""
  return png_bytes(as_sheet(what))


class Picture:
  """Shows ``what`` (see :func:`as_sheet`) as a notebook cell's value.

  ``Picture(np.stack([photo, image]))`` or ``Picture([photo, image])`` puts
  images side by side; the sheet is built (and bad input refused) at once.
  """

  def __init__(self, what):
    if isinstance(what, (list, tuple)):
      shapes = sorted({np.shape(a) for a in what})
      if len(shapes) > 1:
        raise ValueError(f"Picture: images of different shapes {shapes}; "
                         "resize them to one size first")
      what = np.stack([np.asarray(a, np.float32) for a in what])
    self.sheet = as_sheet(what)

  def _repr_png_(self) -> bytes:
    return png_bytes(self.sheet)

  def __repr__(self) -> str:
    h, w = self.sheet.shape[:2]
    return f"Picture({w}×{h})"


def save(what, path: os.PathLike | str) -> pathlib.Path:
  """Writes ``what`` as one PNG — the contact sheet a notebook shows — atomically.

  Args:
    what: a render result, an atlas or an image array (see :func:`as_sheet`).
    path: the file to write; it must end in ``.png``. Missing parent folders
      are created; an existing file is replaced only once the new one is
      complete.

  Returns:
    ``path`` as a :class:`pathlib.Path`.

  Raises:
    ValueError: a path that does not end in ``.png``, or an array that is not
      images (one line naming the problem).
  """
  path = pathlib.Path(path)
  if path.suffix.lower() != ".png":
    raise ValueError(f"display.save writes PNG files: give a path ending in "
                     f".png, got {str(path)!r}")
  data = sheet_png(what)          # fails on bad input before touching the disk
  path.parent.mkdir(parents=True, exist_ok=True)
  workdir.write_bytes(path, data)
  return path
