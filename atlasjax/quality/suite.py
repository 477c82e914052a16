"""Every quality measure per unit, for a list of units and one render setting.

The photo set is read once (:func:`photo_stats`: the unit layers' channel
means and the judge's embedding of every photo); then each batch of units
costs one render of the signed-channel family (:func:`score_units`) and a few
forward passes. Natural-reference trials depend only on the photos
(:func:`natural_scores`). ``experiments/quality.py`` adds the work directory,
resume, images and tables around these calls.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np

from atlasjax import images as images_lib
from atlasjax import progress
from atlasjax.models import base
from atlasjax.optvis import render
from atlasjax.quality import path as path_lib
from atlasjax.quality import psychophysics
from atlasjax.quality import references as refs_lib

PHOTO_BATCH = 32


@dataclasses.dataclass(frozen=True)
class SuiteConfig:
  """Trial design (defaults: Borowski et al.'s 9 references per side).

  Attributes:
    references: references per side (max and min).
    trials: query pairs per unit.
    random_photos: random reference-half photos forming the path check's floor.
    seed: seeds the photo split, the random photos and the bootstrap.
    resamples: bootstrap resamples.
  """

  references: int = psychophysics.DEFAULT_REFERENCES
  trials: int = 10
  random_photos: int = 32
  seed: int = 0
  resamples: int = psychophysics.DEFAULT_RESAMPLES


@dataclasses.dataclass
class PhotoStats:
  """What the suite reads from the photo set, computed once.

  Attributes:
    paths: the photos, in the order of every array below.
    unit_values: ``{layer: [N, C]}`` channel means at the model's input size.
    embeddings: ``[N, D]`` the judge's embeddings at the trial size.
    split: the reference / held-out query halves.
    random: indices of the path check's random photos (reference half).
  """

  paths: list[str]
  unit_values: dict[str, np.ndarray]
  embeddings: np.ndarray
  split: refs_lib.Split
  random: np.ndarray


def photo_stats(model: base.Model, params, judge: base.Model, judge_params,
                paths: Sequence[str], layers: Sequence[str],
                config: SuiteConfig) -> PhotoStats:
  """Reads every photo once (its evaluation crop at the trial size, as saved
  for the trials): unit-layer channel means at the model's input size and
  judge embeddings."""
  kept, (values, embeddings) = _over_photos(
      paths, _layer_values(model, params, layers),
      lambda x: psychophysics.embed(judge, judge_params, x))
  split = refs_lib.split_photos(len(kept), config.seed)
  random = np.sort(np.random.default_rng(config.seed + 1).choice(
      split.reference, min(config.random_photos, len(split.reference)), replace=False))
  return PhotoStats(kept, values, embeddings, split, random)


def add_layers(stats: PhotoStats, model: base.Model, params,
               layers: Sequence[str]) -> PhotoStats:
  """``stats`` with the unit values of ``layers`` added (one pass over its photos)."""
  kept, (values,) = _over_photos(stats.paths, _layer_values(model, params, layers))
  if kept != stats.paths:
    missing = sorted(set(stats.paths) - set(kept))
    raise ValueError(f"{len(missing)} photo(s) of this run no longer load "
                     f"(first: {missing[0]}); restore them or start a new --out.")
  return dataclasses.replace(stats, unit_values={**stats.unit_values, **values})


def _layer_values(model, params, layers):
  layers = tuple(layers)
  return lambda x: path_lib.layer_means(model, params, x, layers, size=model.input_size)


def _over_photos(paths, *fns):
  """``(loaded paths, [each fn's outputs concatenated])`` over batches of the
  photos' trial-size crops (photos that fail to load are left out)."""
  load = lambda p: images_lib.load_for_model(p, psychophysics.TRIAL_SIZE)  # noqa: E731
  outputs, kept = [[] for _ in fns], []
  with progress.bar(len(paths), "photos", unit="photo") as bar:
    for batch in images_lib.iter_batches(list(paths), PHOTO_BATCH, load=load):
      for out, fn in zip(outputs, fns):
        out.append(fn(batch.images))
      kept += batch.paths
      bar.update(len(batch.paths))
  return kept, [jax.tree_util.tree_map(lambda *a: np.concatenate(a), *out) for out in outputs]


def unit_trials(stats: PhotoStats, layer: str, unit: int,
                config: SuiteConfig) -> refs_lib.Trials:
  """The photo indices of one unit's natural references and queries."""
  return refs_lib.natural_trials(stats.unit_values[layer][:, unit], stats.split,
                                 config.references, config.trials)


def natural_scores(stats: PhotoStats, trials: refs_lib.Trials) -> np.ndarray:
  """``[T]`` correct trials with the unit's natural references."""
  e = stats.embeddings
  return psychophysics.judge_trials(e[trials.ref_max], e[trials.ref_min],
                                    e[trials.query_max], e[trials.query_min])


@dataclasses.dataclass
class UnitScore:
  """One unit under one render setting.

  Attributes:
    synthetic: ``[T]`` correct trials with synthetic references.
    natural: ``[T]`` correct trials with natural references.
    path: the path check.
    reached: the unit's mean activation on its max visualizations (mean over
      references, at the render size).
    best_photo: its highest activation over the photo set.
    refs_max, refs_min: the synthetic references ``[n, S, S, 3]``.
    trials: the natural references and queries (photo indices).
  """

  layer: str
  unit: int
  synthetic: np.ndarray
  natural: np.ndarray
  path: path_lib.PathCurve
  reached: float
  best_photo: float
  refs_max: np.ndarray
  refs_min: np.ndarray
  trials: refs_lib.Trials


def load_photos(paths: Sequence[str], size: int) -> np.ndarray:
  """``[N, size, size, 3]`` evaluation crops of ``paths`` (trial-size crops
  resized to ``size``, as the renders are seen)."""
  crops = np.stack([images_lib.load_for_model(p, psychophysics.TRIAL_SIZE) for p in paths])
  return np.asarray(psychophysics.resize(crops, size))


def score_units(model: base.Model, params, judge: base.Model, judge_params,
                stats: PhotoStats, layer: str, units: Sequence[int],
                render_config: render.RenderConfig, key: jax.Array,
                config: SuiteConfig,
                load: Callable[[Sequence[str], int], np.ndarray] = load_photos
                ) -> list[UnitScore]:
  """Renders ``units``' synthetic references (one batched render) and scores each.

  The path check runs at the render size: the visualizations, the unit's top
  natural exemplars (its natural max references) and the random photos are all
  seen by the network at ``render_config.size`` px.
  """
  n = config.references
  maxes, mins = refs_lib.render_synthetic(model, params, layer, units,
                                          render_config, key, n)
  # Judge exactly what is saved: 8-bit images (a trial recomputes from PNGs).
  maxes, mins = (np.round(np.clip(x, 0, 1) * 255) / 255 for x in (maxes, mins))
  every_trials = [unit_trials(stats, layer, unit, config) for unit in units]
  ref_e = psychophysics.embed(judge, judge_params, np.concatenate(
      [maxes, mins], 1).reshape(-1, *maxes.shape[2:])).reshape(len(units), 2, n, -1)
  curves, reached = _path_checks(model, params, stats, layer, units, maxes, every_trials,
                                 render_config.size, load)
  e = stats.embeddings
  return [UnitScore(layer, int(unit),
                    psychophysics.judge_trials(ref_e[u, 0], ref_e[u, 1],
                                               e[trials.query_max], e[trials.query_min]),
                    natural_scores(stats, trials), curves[u], reached[u],
                    float(stats.unit_values[layer][:, unit].max()), maxes[u], mins[u], trials)
          for u, (unit, trials) in enumerate(zip(units, every_trials))]


def _path_checks(model, params, stats, layer, units, maxes, every_trials, size, load):
  """Each unit's path curve and the activation its max visualizations reach.

  One forward pass per kind of image for all units (fuller batches): the
  visualizations, every unit's top natural exemplars, the random photos.
  """
  layers = path_lib.path_layers(model, layer)
  split = lambda acts, sizes: [{k: v[a:b] for k, v in acts.items()}  # noqa: E731
                               for a, b in zip(np.cumsum([0, *sizes[:-1]]), np.cumsum(sizes))]
  random = path_lib.layer_means(model, params, load(
      [stats.paths[i] for i in stats.random], size), layers)
  vis = split(path_lib.layer_means(model, params, maxes.reshape(-1, *maxes.shape[2:]), layers),
              [maxes.shape[1]] * len(units))
  top = split(path_lib.layer_means(model, params, load(
      [stats.paths[i] for t in every_trials for i in t.ref_max], size), layers),
              [len(t.ref_max) for t in every_trials])
  curves = [path_lib.path_curve(v, t, random) for v, t in zip(vis, top)]
  reached = [float(v[layer][:, unit].mean()) for v, unit in zip(vis, units)]
  return curves, reached


__all__ = ["PhotoStats", "SuiteConfig", "UnitScore", "add_layers", "load_photos",
           "natural_scores", "photo_stats", "score_units", "unit_trials"]
