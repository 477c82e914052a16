"""Stage 3a of an activation atlas: binning the layout into grid cells.

A ``size × size`` grid over the normalised layout; cell ``(x, y)`` counts
columns from the left and rows from the top (see :mod:`atlasjax.atlas.layout`
for the orientation). A cell is kept when its count exceeds ``min_density``.
For every kept cell we average the raw activation vectors (the direction its
icon inverts) and the attributions (its top classes), and list the sample
images nearest (cosine) to the cell mean.
"""

from __future__ import annotations

import dataclasses

import numpy as np


class EmptyGridError(ValueError):
  """No cell of a grid has more samples than the density threshold."""


@dataclasses.dataclass
class Grid:
  """The kept cells of one grid, as parallel arrays (one row per cell)."""
  size: int
  x: np.ndarray              # [K] column from the left
  y: np.ndarray              # [K] row from the top
  count: np.ndarray          # [K]
  directions: np.ndarray     # [K, C] mean raw activation
  attributions: np.ndarray | None   # [K, classes] mean attribution
  examples: list[list[int]]  # per cell: sample indices nearest to the mean

  def __len__(self) -> int:
    return len(self.x)


def cell_of(xy: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Grid column and row (from the top) of each normalised layout point."""
  xy = np.asarray(xy, np.float64)
  col = np.clip(np.floor(xy[:, 0] * size), 0, size - 1).astype(np.int64)
  row = np.clip(np.floor((1.0 - xy[:, 1]) * size), 0, size - 1).astype(np.int64)
  return col, row


def flat_cells(xy: np.ndarray, size: int, exclude: np.ndarray | None = None
               ) -> np.ndarray:
  """Flat cell index ``row * size + col`` of each point; ``size²`` (a cell
  past the grid) for points in ``exclude`` (layout outliers)."""
  col, row = cell_of(xy, size)
  flat = row * size + col
  if exclude is not None:
    flat = np.where(np.asarray(exclude, bool), size * size, flat)
  return flat


def build_grid(xy: np.ndarray, vectors: np.ndarray, size: int, min_density: int,
               attributions: np.ndarray | None = None, n_examples: int = 8,
               image_index: np.ndarray | None = None,
               exclude: np.ndarray | None = None) -> Grid:
  """Bins points into a ``size × size`` grid and summarises the kept cells.

  ``examples`` lists sample indices nearest to each cell's mean, at most one
  per image when ``image_index`` is given. Points flagged in ``exclude``
  (the layout's outliers, :func:`atlasjax.atlas.layout.layout_outliers`)
  belong to no cell.
  """
  if size < 1:
    raise ValueError(f"Grid size must be positive, got {size}.")
  flat = flat_cells(xy, size, exclude)
  counts = np.bincount(flat, minlength=size * size + 1)[:size * size]
  kept = np.flatnonzero(counts > min_density)
  if kept.size == 0:
    raise EmptyGridError(
        f"No cell of the {size}×{size} grid has more than {min_density} samples "
        f"(the fullest has {counts.max()} of {len(xy)}). Lower --min_density, use "
        "a coarser grid, or collect more samples (--crops_per_image).")
  order = np.argsort(flat, kind="stable")
  starts = np.concatenate([[0], np.cumsum(counts)])
  vectors = np.asarray(vectors)
  directions, attrs, examples = [], [], []
  for cell in kept:
    # Ascending sample indices: the stable argsort keeps input order per cell.
    members = order[starts[cell]:starts[cell + 1]]
    v = np.asarray(vectors[members], np.float64)
    mean = v.mean(axis=0)
    directions.append(mean)
    if attributions is not None:
      attrs.append(np.asarray(attributions[members], np.float64).mean(0))
    cos = (v @ mean) / (np.linalg.norm(v, axis=1) * np.linalg.norm(mean) + 1e-12)
    ranked = members[np.argsort(-cos, kind="stable")]
    if image_index is not None:
      _, first = np.unique(np.asarray(image_index)[ranked], return_index=True)
      ranked = ranked[np.sort(first)]
    examples.append([int(i) for i in ranked[:n_examples]])
  return Grid(
      size=size, x=(kept % size).astype(np.int32), y=(kept // size).astype(np.int32),
      count=counts[kept].astype(np.int32),
      directions=np.asarray(directions, np.float32),
      attributions=None if attributions is None else np.asarray(attrs, np.float32),
      examples=examples)


def top_classes(attribution: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
  order = np.argsort(-attribution, kind="stable")[:k]
  return [(int(i), float(attribution[i])) for i in order]
