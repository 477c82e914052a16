"""PNG bytes for Jupyter's rich display (``_repr_png_``) of results.

Only numpy and PIL, so showing a result does not import matplotlib.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Gap between tiles of a contact sheet, and its colour (white).
SHEET_PAD = 2
SHEET_PAD_VALUE = 1.0


def png_bytes(image) -> bytes:
  """``[H, W, 3]`` (or ``[H, W]``) floats in [0, 1] as PNG bytes."""
  a = np.asarray(image, np.float32)
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
