"""File writes of the features package, through the shared atomic writer.

Every file goes through :mod:`atlasjax.workdir` (unique temporary name,
fsync, rename), so a reader or a resumed run sees the old file or the complete
new one, never a partial write. This module only adds what the features code
wants on top: parent folders are created, arrays come as dicts, images as
``[H, W, 3]`` floats in [0, 1].
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image

from atlasjax import plotting
from atlasjax import workdir as workdir_lib

to_uint8 = plotting.to_uint8
load_json = workdir_lib.read_json


def _in_folder(path: os.PathLike | str) -> pathlib.Path:
  path = pathlib.Path(path)
  workdir_lib.make_dirs(path.parent)   # never through a symlink out of a held work directory
  return path


def save_npy(path: os.PathLike | str, array: np.ndarray) -> None:
  """Atomically writes one array as ``.npy``."""
  workdir_lib.save_npy(_in_folder(path), array)


def save_npz(path: os.PathLike | str, arrays: dict) -> None:
  """Atomically writes a dict of arrays as an uncompressed ``.npz``."""
  workdir_lib.save_npz(_in_folder(path),
                       **{k: np.asarray(v) for k, v in arrays.items()})


def save_json(path: os.PathLike | str, value) -> None:
  """Atomically writes ``value`` as JSON."""
  workdir_lib.write_json(_in_folder(path), value)


def save_png(path: os.PathLike | str, image: np.ndarray) -> None:
  """``[H, W, 3]`` in [0, 1] as a PNG (JPEG when ``path`` ends in .jpg)."""
  workdir_lib.save_image(_in_folder(path), Image.fromarray(to_uint8(image)))
