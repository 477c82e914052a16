"""The path sanity check (after Geirhos et al., ICML 2024).

Geirhos, Zimmermann, Bilodeau, Brendel and Kim ("Don't trust your eyes")
showed that feature visualizations can be made to show arbitrary patterns
while the network's behaviour on natural images barely moves, and that in
unmanipulated networks visualizations are processed differently from the
natural images that drive the same unit. Their proposed sanity check: a
faithful visualization travels the same *path* through the network as the
unit's natural exemplars.

Here, per unit and for each layer ``L`` at or below the unit, every image is
summarised by its spatially averaged activations at ``L``; an image's
*closeness* to the unit's top natural exemplars is its mean cosine similarity
to them. Per layer:

* ``visualization[L]``: the visualizations' mean closeness;
* ``floor[L]``: the random photos' mean closeness (what "unrelated" looks like);
* ``exemplars[L]``: each exemplar's closeness to the *other* exemplars
  (what "related" looks like), averaged;
* ``percentile[L]``: the fraction of random photos less close than the
  visualizations — 0.5 is a typical random photo, 1.0 closer than all of them;
* ``exemplar_percentile[L]``: the same fraction for the exemplars themselves
  (leave-one-out): the ceiling a natural driver of the unit reaches.

The curve of a unit is ``percentile`` over layers; its summary ``score`` is
the mean of that curve. A rank against the floor, unlike a ratio of
similarity gaps, stays bounded where exemplars are barely closer to each other
than to random photos (early layers).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import jax
import numpy as np

from atlasjax.models import base
from atlasjax.quality import psychophysics

BATCH = 32


def path_layers(model: base.Model, layer: str) -> tuple[str, ...]:
  """The trunk layers up to and including ``layer``: spatial outputs whose
  name has no ``_`` (no branch or pre-ReLU twins), in network order."""
  names = model.layer_names[:model.index(layer) + 1]
  return tuple(n for n in names if model.layer(n).spatial and "_" not in n)


def layer_means(model: base.Model, params, images, layers: Sequence[str],
                batch_size: int = BATCH, size: int | None = None
                ) -> dict[str, np.ndarray]:
  """``{layer: [N, C]}`` spatially averaged activations of ``images``
  (resized to ``size`` px first when given)."""
  layers, f = tuple(layers), _means(model, tuple(layers), size)
  images = np.asarray(images, np.float32)[..., :3]
  parts = [f(params, images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
  return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in layers}


@functools.lru_cache(maxsize=None)
def _means(model: base.Model, layers: tuple[str, ...], size: int | None):
  # Compiled once per model, layers and size with the weights an argument
  # (a closure over them recompiles on every call and embeds them as constants).
  def means(params, x):
    x = x if size is None else psychophysics.resize(x, size)
    return {k: v.mean(axis=(1, 2)) for k, v in model.apply(params, x, layers=layers).items()}
  return jax.jit(means)


def _leave_one_out(sim: np.ndarray) -> np.ndarray:
  """Each row's mean similarity to the other rows (``[n]``; NaN when n < 2)."""
  n = len(sim)
  if n < 2:
    return np.full(n, np.nan)
  return (sim.sum(1) - np.diag(sim)) / (n - 1)


def _fraction_below(random: np.ndarray, values: np.ndarray) -> float:
  """Mean over ``values`` of the fraction of ``random`` strictly below each."""
  return float(np.mean(random[None, :] < np.asarray(values)[:, None]))


@dataclasses.dataclass(frozen=True)
class PathCurve:
  """One unit's path check: per-layer closeness, percentiles and the summary."""

  layers: tuple[str, ...]
  visualization: np.ndarray
  floor: np.ndarray
  exemplars: np.ndarray
  percentile: np.ndarray
  exemplar_percentile: np.ndarray
  score: float

  def to_json(self) -> dict:
    """The curve as ``quality.json`` stores it (values rounded to 4 places)."""
    r = lambda a: [round(float(v), 4) for v in a]  # noqa: E731
    return {"layers": list(self.layers), "visualization": r(self.visualization),
            "floor": r(self.floor), "exemplars": r(self.exemplars),
            "percentile": r(self.percentile),
            "exemplar_percentile": r(self.exemplar_percentile),
            "score": round(float(self.score), 4)}


def path_curve(visualization: Mapping[str, np.ndarray],
               exemplars: Mapping[str, np.ndarray],
               random: Mapping[str, np.ndarray]) -> PathCurve:
  """The path check from per-layer activations (``{layer: [N, C]}`` each)."""
  layers = tuple(exemplars)
  cos = psychophysics.cosine
  vis = np.array([cos(visualization[k], exemplars[k]).mean() for k in layers])
  rand = [cos(random[k], exemplars[k]).mean(1) for k in layers]
  loo = [_leave_one_out(cos(exemplars[k], exemplars[k])) for k in layers]
  pct = np.array([_fraction_below(r, [v]) for r, v in zip(rand, vis)])
  ceiling = np.array([_fraction_below(r, e) for r, e in zip(rand, loo)])
  return PathCurve(layers, vis, np.array([r.mean() for r in rand]),
                   np.array([e.mean() for e in loo]), pct, ceiling, float(pct.mean()))


__all__ = ["PathCurve", "layer_means", "path_curve", "path_layers"]
