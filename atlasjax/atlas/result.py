"""A finished atlas as an object: what ``atlas.json`` describes, shown in Jupyter.

``Atlas.open(workdir)`` reads the work directory's ``atlas.json`` (or
``<layer>.atlas.json``); the object lists the grids and shows the finest
grid's atlas image when it is the value of a notebook cell (``_repr_png_``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np
from PIL import Image

from atlasjax import display
from atlasjax import readers
from atlasjax import workdir as workdir_lib
from atlasjax.atlas import render_atlas


@dataclasses.dataclass(frozen=True)
class Atlas:
  """An atlas on disk.

  Attributes:
    workdir: its work directory.
    info: the parsed ``atlas.json``.
  """

  workdir: pathlib.Path
  info: dict

  @classmethod
  def open(cls, workdir: os.PathLike | str, layer: str | None = None) -> "Atlas":
    """The main atlas of ``workdir``, or that of another built ``layer``."""
    workdir = pathlib.Path(workdir)
    path = workdir / render_atlas.ATLAS_JSON
    if layer is not None and not _is_main(path, layer):
      path = workdir / f"{workdir_lib.file_name(layer)}.{render_atlas.ATLAS_JSON}"
    if not path.exists():
      raise FileNotFoundError(f"No atlas at {path}; build one with "
                              "experiments/atlas.py --workdir=" f"{workdir}")
    return cls(workdir, readers.read_atlas(path))

  @property
  def layer(self) -> str:
    """The layer this atlas shows."""
    return self.info["layer"]

  @property
  def grid_sizes(self) -> tuple[int, ...]:
    """Side lengths of the atlas's grids, as in ``atlas.json``."""
    return tuple(g["size"] for g in self.info["grids"])

  def grid(self, size: int | None = None) -> dict:
    """The ``atlas.json`` entry of grid ``size`` (default: the finest)."""
    size = self.grid_sizes[-1] if size is None else size
    for g in self.info["grids"]:
      if g["size"] == size:
        return g
    raise ValueError(f"No {size}×{size} grid; this atlas has {self.grid_sizes}")

  def image(self, size: int | None = None) -> np.ndarray:
    """The atlas image of grid ``size`` as ``[H, W, 3]`` floats in [0, 1]."""
    with Image.open(self.workdir / self.grid(size)["atlas"]) as im:
      return np.asarray(im.convert("RGB"), np.float32) / 255.0

  def _repr_png_(self) -> bytes:
    return display.png_bytes(self.image())

  def __repr__(self) -> str:
    return (f"Atlas({self.info.get('model')} {self.layer}, grids "
            f"{self.grid_sizes}, {self.workdir})")


def _is_main(path: pathlib.Path, layer: str) -> bool:
  return path.exists() and readers.read_atlas(path)["layer"] == layer
