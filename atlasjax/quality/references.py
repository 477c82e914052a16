"""References and queries of each trial: which photos, which renders.

A photo set is split once (seeded) into a *reference* half and a held-out
*query* half, so no photo is ever both a reference and a query. Per unit
(a channel of a layer, scored by its spatial mean as the ``channel``
objective is):

* natural references: the ``n`` reference-half photos that drive the unit
  most (``ref_max``) and least (``ref_min``);
* queries: trial ``j`` pairs the ``j``-th most activating query-half photo
  (``query_max_j``) with the ``j``-th least activating (``query_min_j``) —
  the extremes of the unit's activation, as in Borowski et al.;
* synthetic references: ``n`` visualizations of the unit and ``n`` of its
  negation, rendered as ONE family (:func:`signed_channel`) so every
  parameterization and unit shares one compiled program. The negation reads
  the layer's pre-ReLU twin when the model declares one: the mean of a
  post-ReLU channel stops at 0 (a grey image already reaches it, and the
  gradient vanishes there), while its pre-ReLU input can be driven down into
  a pattern — what Borowski et al.'s minimally activating references show.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from atlasjax.models import base
from atlasjax.optvis import objectives
from atlasjax.optvis import render


@dataclasses.dataclass(frozen=True)
class Split:
  """Photo indices of the reference half and the held-out query half."""

  reference: np.ndarray
  query: np.ndarray


def split_photos(n_photos: int, seed: int) -> Split:
  """A seeded half/half split of ``n_photos`` (sorted indices in each half)."""
  if n_photos < 4:
    raise ValueError(f"{n_photos} photos are too few to split into references "
                     "and queries; pass a folder of at least 4 photos.")
  order = np.random.default_rng(seed).permutation(n_photos)
  half = n_photos // 2
  return Split(np.sort(order[:half]), np.sort(order[half:]))


@dataclasses.dataclass(frozen=True)
class Trials:
  """Photo indices of one unit's natural references and query pairs."""

  ref_max: np.ndarray     # [n] most activating reference photos, best first
  ref_min: np.ndarray     # [n] least activating, least first
  query_max: np.ndarray   # [T]
  query_min: np.ndarray   # [T]


def extremes(values: np.ndarray, among: np.ndarray, n: int
             ) -> tuple[np.ndarray, np.ndarray]:
  """The ``n`` indices in ``among`` with the highest ``values`` (highest first)
  and the ``n`` with the lowest (lowest first). Ties break by index."""
  among = np.asarray(among)
  order = among[np.argsort(-np.asarray(values)[among], kind="stable")]
  low = among[np.argsort(np.asarray(values)[among], kind="stable")]
  return order[:n], low[:n]


def natural_trials(unit_values: np.ndarray, split: Split, references: int,
                   trials: int) -> Trials:
  """One unit's natural references and query pairs (see the module docstring).

  Args:
    unit_values: ``[N]`` the unit's activation on every photo.
    split: the reference / query halves.
    references: references per side.
    trials: query pairs.
  """
  if 2 * references > len(split.reference) or 2 * trials > len(split.query):
    raise ValueError(
        f"{references} references and {trials} trials per side need at least "
        f"{2 * references} reference and {2 * trials} query photos; the split "
        f"has {len(split.reference)} and {len(split.query)}: pass more photos "
        "or fewer references / trials.")
  ref_max, ref_min = extremes(unit_values, split.reference, references)
  query_max, query_min = extremes(unit_values, split.query, trials)
  return Trials(ref_max, ref_min, query_max, query_min)


def signed_channel(layer: str, negative_layer: str | None = None):
  """The family ``arg -> channel(layer, u)`` for ``arg["sign"] = +1`` and
  ``-channel(negative_layer, u)`` for ``-1`` (``negative_layer`` defaults to
  ``layer``); the sign is a per-item array, so both are one program."""
  negative_layer = negative_layer or layer

  def make(arg):
    up, down = (arg["sign"] + 1) / 2, (arg["sign"] - 1) / 2   # (1, 0) or (0, -1)
    return (up * objectives.channel(layer, arg["unit"])
            + down * objectives.channel(negative_layer, arg["unit"]))
  return make


def synthetic_args(units: Sequence[int], references: int) -> dict:
  """Per-item args of :func:`signed_channel`: per unit ``references`` items of
  sign +1 then ``references`` of sign -1."""
  units = np.asarray(units, np.int32)
  per_unit = 2 * references
  return {"unit": np.repeat(units, per_unit),
          "sign": np.tile(np.repeat(np.float32([1.0, -1.0]), references), len(units))}


def synthetic_item_ids(units: Sequence[int], references: int) -> np.ndarray:
  """Seed ids: unit ``u``'s ``k``-th item is ``u · 2n + k`` in any batch, so a
  unit renders the same images whatever else is in the batch."""
  per_unit = 2 * references
  units = np.asarray(units, np.int64)
  return (units[:, None] * per_unit + np.arange(per_unit)).reshape(-1)


def render_synthetic(model: base.Model, params, layer: str, units: Sequence[int],
                     config: render.RenderConfig, key: jax.Array,
                     references: int) -> tuple[np.ndarray, np.ndarray]:
  """Synthetic references: ``(max, min)``, each ``[U, references, S, S, 3]``.

  One batched render of the :func:`signed_channel` family (unit and negation;
  the negation on the pre-ReLU twin when the model has one).
  """
  family = signed_channel(layer, model.pre_relu(layer))
  result = render.render(model, params, family,
                         synthetic_args(units, references), config, key,
                         item_ids=synthetic_item_ids(units, references))
  images = np.asarray(result.images)[..., :3].reshape(
      len(units), 2, references, *result.images.shape[1:3], 3)
  return images[:, 0], images[:, 1]


__all__ = ["Split", "Trials", "extremes", "natural_trials", "render_synthetic",
           "signed_channel", "split_photos", "synthetic_args", "synthetic_item_ids"]
