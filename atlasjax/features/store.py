"""Atomic file writes for the features package.

Every file is written under a unique temporary name in its folder and moved
into place with ``os.replace``, so a reader (or a resumed run) sees either the
old file or the complete new one, never a partial write, and two writers never
share a temporary file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import tempfile
from typing import Iterator

import numpy as np
from PIL import Image


@contextlib.contextmanager
def _atomic(path: pathlib.Path) -> Iterator[io.BufferedWriter]:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                             dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def save_npy(path: os.PathLike | str, array: np.ndarray) -> None:
  with _atomic(pathlib.Path(path)) as f:
    np.save(f, np.asarray(array))


def save_npz(path: os.PathLike | str, arrays: dict) -> None:
  with _atomic(pathlib.Path(path)) as f:
    np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


def save_json(path: os.PathLike | str, value) -> None:
  with _atomic(pathlib.Path(path)) as f:
    f.write(json.dumps(value, indent=1).encode())


def to_uint8(image: np.ndarray) -> np.ndarray:
  return (np.clip(np.asarray(image, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


def save_png(path: os.PathLike | str, image: np.ndarray) -> None:
  """``[H, W, 3]`` in [0, 1] as a PNG (JPEG when ``path`` ends in .jpg)."""
  path = pathlib.Path(path)
  fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
  with _atomic(path) as f:
    Image.fromarray(to_uint8(image)).save(f, format=fmt)


def load_json(path: os.PathLike | str):
  return json.loads(pathlib.Path(path).read_text())
