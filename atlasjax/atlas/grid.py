"""Stage 3a of an activation atlas: binning the layout into grid cells.

A ``size × size`` grid over the normalised layout; cell ``(x, y)`` counts
columns from the left and rows from the top (see :mod:`atlasjax.atlas.layout`
for the orientation). A cell is kept when its count exceeds ``min_density``.
For every kept cell we average the raw activation vectors (the direction its
icon inverts) and the attributions, rank the classes the cell supports (its
top classes, below) and list the sample images nearest (cosine) to the cell
mean.

Class ranking ("support"). Collect stores, per vector, its logit attribution
``A_ic`` (the JVP of logit ``c`` along that one activation vector) and the
crop's top-5 logits. A cell's score for class ``c`` is

    support_c = mean over the cell's vectors i of  q_ic · A_ic,

with ``q_i`` the softmax of crop ``i``'s top-5 logits (zero for the other
classes): how much the cell's vectors push up the logits of the
classifications the network actually made in the photos they came from — the
Distill article labels cells "with the classification they most support".
Why not the plain mean of ``A_ic`` (Lucid's collect notebook, and this
project's ranking before): one position out of 14×14 moves each of 1,000
logits by about ±0.07 and the predicted class by only +0.03 on average, so
the per-cell mean over tens of vectors is mostly noise (split-half
correlation 0.12–0.23 on the default atlas) and its top-5 are the classes
with the largest noise — the paper averaged hundreds of vectors per cell
from 10⁶ (its caption: "a linear approximation of the effect of these
average activation vectors of a grid cell on the logits", i.e. the plain
mean). Weighting by the crop's prediction keeps the attribution's sign and
size but only over the classes the network considered. The plain mean is
still written (``attributions``) and ranks the cells with
``AtlasConfig.class_ranking="mean_attribution"``; ``bench/cell_labels.py``
measures both.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Rankings of a cell's classes (module docstring).
CLASS_RANKINGS = ("support", "mean_attribution")
DEFAULT_CLASS_RANKING = "support"


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
  # [K, classes] the class ranking's scores (see the module docstring), None
  # without attributions or predictions.
  class_scores: np.ndarray | None = None
  members: list[np.ndarray] | None = None   # per cell: its sample indices

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
               exclude: np.ndarray | None = None,
               top_classes: np.ndarray | None = None,
               top_logits: np.ndarray | None = None) -> Grid:
  """Bins points into a ``size × size`` grid and summarises the kept cells.

  ``examples`` lists sample indices nearest to each cell's mean, at most one
  per image when ``image_index`` is given. Points flagged in ``exclude``
  (the layout's outliers, :func:`atlasjax.atlas.layout.layout_outliers`)
  belong to no cell. With ``attributions`` and the crops' ``top_classes``
  and ``top_logits`` ``[N, k]``, ``class_scores`` holds each cell's support
  per class (:func:`class_support`).
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
  directions, attrs, examples, scores, members_of = [], [], [], [], []
  with_scores = (attributions is not None and top_classes is not None
                 and top_logits is not None)
  for cell in kept:
    # Ascending sample indices: the stable argsort keeps input order per cell.
    members = order[starts[cell]:starts[cell + 1]]
    v = np.asarray(vectors[members], np.float64)
    mean = v.mean(axis=0)
    directions.append(mean)
    members_of.append(members)
    if attributions is not None:
      a = np.asarray(attributions[members], np.float64)
      attrs.append(a.mean(0))
      if with_scores:
        scores.append(class_support(a, np.asarray(top_classes)[members],
                                    np.asarray(top_logits)[members]))
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
      examples=examples,
      class_scores=np.asarray(scores, np.float32) if with_scores else None,
      members=members_of)


def prediction_weights(top_logits: np.ndarray) -> np.ndarray:
  """``q``: softmax over each crop's stored top-k logits ``[N, k]``."""
  z = np.asarray(top_logits, np.float64)
  e = np.exp(z - z.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def class_support(attributions: np.ndarray, top_classes: np.ndarray,
                  top_logits: np.ndarray) -> np.ndarray:
  """One cell's support per class: ``mean_i q_ic · A_ic`` (module docstring).

  ``attributions`` ``[n, classes]``; ``top_classes``, ``top_logits``
  ``[n, k]`` of the same vectors. Classes outside every crop's top-k score 0.
  """
  a = np.asarray(attributions, np.float64)
  idx = np.asarray(top_classes, np.int64)
  q = prediction_weights(top_logits)
  rows = np.arange(len(a))[:, None]
  out = np.zeros(a.shape[1], np.float64)
  np.add.at(out, idx, q * a[rows, idx])
  return out / max(len(a), 1)


def top_classes(scores: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
  """The ``k`` highest-scoring classes, ``(index, score)``, best first."""
  order = np.argsort(-scores, kind="stable")[:k]
  return [(int(i), float(scores[i])) for i in order]


def most_common(values: np.ndarray) -> set[int]:
  """The most frequent value(s) of an int array (all of them when tied)."""
  counts = np.bincount(np.asarray(values, np.int64))
  return {int(i) for i in np.flatnonzero(counts == counts.max())}


def label_agreement(scores: np.ndarray, members: list[np.ndarray],
                    predictions: np.ndarray, k: int = 5, seed: int = 0) -> dict:
  """How often a cell's ranked classes contain its photos' most common
  prediction.

  ``scores`` ``[cells, classes]`` (any ranking), ``members`` each cell's
  sample indices, ``predictions`` each sample's top-1 class. A cell agrees
  at top-1 when its best class is a most common prediction of its members
  (every class tied for most common counts), at top-k when any of its k best
  is. ``chance_*`` scores each cell's ranking against a different cell's
  members (a seeded derangement): what a ranking unrelated to the cell gets.
  """
  predictions = np.asarray(predictions)
  modes = [most_common(predictions[m]) for m in members]
  ranked = [np.argsort(-s, kind="stable")[:k] for s in np.asarray(scores)]
  n = len(members)

  def rate(order):
    top1 = np.mean([ranked[o][0] in modes[i] for i, o in enumerate(order)])
    topk = np.mean([bool(modes[i] & set(ranked[o].tolist()))
                    for i, o in enumerate(order)])
    return float(top1), float(topk)

  top1, topk = rate(range(n))
  shift = 1 + np.random.default_rng(seed).integers(max(n - 1, 1))
  chance1, chancek = rate([(i + shift) % n for i in range(n)]) if n > 1 else (0.0, 0.0)
  return {"cells": n, "top1": top1, f"top{k}": topk, "chance_top1": chance1,
          f"chance_top{k}": chancek,
          "unique_mode": float(np.mean([len(m) == 1 for m in modes]))}
