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
  layers, size = tuple(layers), model.input_size
  means = jax.jit(lambda x: {k: v.mean(axis=(1, 2)) for k, v in model.apply(
      params, psychophysics.resize(x, size), layers=layers).items()})
  values, embeddings, kept = {k: [] for k in layers}, [], []
  load = lambda p: images_lib.load_for_model(p, psychophysics.TRIAL_SIZE)  # noqa: E731
  with progress.bar(len(paths), "photos", unit="photo") as bar:
    for batch in images_lib.iter_batches(list(paths), PHOTO_BATCH, load=load):
      out = means(batch.images)
      for k in layers:
        values[k].append(np.asarray(out[k]))
      embeddings.append(psychophysics.embed(judge, judge_params, batch.images))
      kept += batch.paths
      bar.update(len(batch.paths))
  split = refs_lib.split_photos(len(kept), config.seed)
  random = np.sort(np.random.default_rng(config.seed + 1).choice(
      split.reference, min(config.random_photos, len(split.reference)), replace=False))
  return PhotoStats(kept, {k: np.concatenate(v) for k, v in values.items()},
                    np.concatenate(embeddings), split, random)


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
  layers = path_lib.path_layers(model, layer)
  size = render_config.size
  random_acts = path_lib.layer_means(model, params, load(
      [stats.paths[i] for i in stats.random], size), layers)
  e = stats.embeddings
  out = []
  for u, unit in enumerate(units):
    trials = unit_trials(stats, layer, unit, config)
    ref_e = psychophysics.embed(judge, judge_params, np.concatenate([maxes[u], mins[u]]))
    synthetic = psychophysics.judge_trials(ref_e[:n], ref_e[n:], e[trials.query_max],
                                           e[trials.query_min])
    vis_acts = path_lib.layer_means(model, params, maxes[u], layers)
    top_acts = path_lib.layer_means(model, params, load(
        [stats.paths[i] for i in trials.ref_max], size), layers)
    curve = path_lib.path_curve(vis_acts, top_acts, random_acts)
    out.append(UnitScore(
        layer, int(unit), synthetic, natural_scores(stats, trials), curve,
        float(vis_acts[layer][:, unit].mean()),
        float(stats.unit_values[layer][:, unit].max()), maxes[u], mins[u], trials))
  return out


__all__ = ["PhotoStats", "SuiteConfig", "UnitScore", "load_photos",
           "natural_scores", "photo_stats", "score_units", "unit_trials"]
