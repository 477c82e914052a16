"""A resumable quality run in a work directory (what ``experiments/quality.py`` calls).

Layout of ``out/`` (every file written atomically through
:mod:`atlasjax.workdir`, under its lock)::

  run.json                       settings and their fingerprint
  photos.npz                     per-photo unit values and judge embeddings
  units/<param>/<layer>_<unit>.json   one record per scored unit (resume point)
  trials/<param>/<layer>_<unit>/ ref_max_<i>.png, ref_min_<i>.png,
                                 query_max_<j>.png, query_min_<j>.png
  trials/natural/<layer>_<unit>/ the natural references (same names)
  quality.json, quality.md, quality.png

A rerun with the same settings skips every unit already recorded (units,
layers and parameterizations may be added); different settings are refused
before anything is written.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Sequence

import jax
import numpy as np
from PIL import Image

from atlasjax import images as images_lib
from atlasjax import plotting
from atlasjax import progress
from atlasjax import readers
from atlasjax import workdir as workdir_lib
from atlasjax.models import base
from atlasjax.optvis import registry
from atlasjax.optvis import render
from atlasjax.quality import psychophysics
from atlasjax.quality import references as refs_lib
from atlasjax.quality import report
from atlasjax.quality import suite as suite_lib

RUN_FILE = "run.json"
PHOTOS_FILE = "photos.npz"
NATURAL = "natural"
# photos.npz: which photos, the split, and per-layer values_<layer> [N, C].
PHOTOS_SPEC = {
    "paths": readers.Array(("N",), readers.STRING),
    "embeddings": readers.Array(("N", None)),
    "reference": readers.Array((None,), readers.INTEGER),
    "query": readers.Array((None,), readers.INTEGER),
    "random": readers.Array((None,), readers.INTEGER),
}
# Version of the trial design; results of another design are not mixed.
# 2: the negation's references minimize the pre-ReLU channel.
DESIGN = 2


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """What a quality run scores and how.

  Attributes:
    model, judge: registry names (recorded in the output).
    layers, units: every unit ``u`` of every layer is scored.
    params: parameterizations (built-in, registered or ``module:factory``).
    size, steps, lr, transforms: the renders (equal for every param).
    batch_units: units per batched render (the compiled chunk).
    suite: the trial design.
  """

  model: str
  judge: str
  layers: tuple[str, ...]
  units: tuple[int, ...]
  params: tuple[str, ...]
  size: int = 128
  steps: int = 256
  lr: float = render.DEFAULT_LR
  transforms: str = "standard"
  batch_units: int = 4
  suite: suite_lib.SuiteConfig = suite_lib.SuiteConfig()

  def render_config(self, param: str) -> render.RenderConfig:
    """The render of one parameterization (chunk = one batch of units)."""
    return render.RenderConfig(
        size=self.size, steps=self.steps, lr=self.lr, param=param,
        transforms=self.transforms,
        chunk_size=self.batch_units * 2 * self.suite.references)

  def settings(self) -> dict:
    """What the stored results depend on (not which units or params)."""
    return {"design": DESIGN, "model": self.model, "judge": self.judge, "size": self.size,
            "steps": self.steps, "lr": self.lr, "transforms": self.transforms,
            **dataclasses.asdict(self.suite)}


def check(spec: RunSpec, model: base.Model, judge: base.Model, photos: Sequence[str]) -> None:
  """Every input checked before any work (one-line ValueErrors)."""
  for layer in spec.layers:
    if not model.layer(layer).spatial:
      raise ValueError(f"--layer={layer} has no spatial extent; pick a "
                       f"convolutional layer of {model.name}.")
    depth = model.layer(layer).depth
    bad = [u for u in spec.units if not 0 <= u < depth]
    if bad:
      raise ValueError(f"--units: {bad[0]} is out of range for {layer} "
                       f"({depth} channels: 0-{depth - 1}).")
  for param in spec.params:
    registry.check("param", param)
  psychophysics.embedding_layer(judge)
  s = spec.suite
  need = 2 * max(2 * s.references, 2 * s.trials)
  if len(photos) < need:
    raise ValueError(f"{len(photos)} photos are too few for {s.references} "
                     f"references and {s.trials} trials per side (need {need}); "
                     "pass a bigger --photos folder or lower --references/--trials.")


def _record_settings(out: pathlib.Path, spec: RunSpec, photos_id: str) -> None:
  settings = {**spec.settings(), "photos": photos_id}
  fingerprint = workdir_lib.text_fingerprint(settings)
  path = out / RUN_FILE
  if path.exists():
    old = workdir_lib.read_json(path)
    if old.get("fingerprint") != fingerprint:
      diff = sorted(k for k in settings if old.get("settings", {}).get(k) != settings[k])
      raise ValueError(f"{out} holds a quality run with other settings "
                       f"({', '.join(diff)}); use another --out or the same flags.")
    return
  workdir_lib.write_json(path, {"settings": settings, "fingerprint": fingerprint})


def _photo_stats(out, spec, model, params, judge, judge_params, photos):
  path = out / PHOTOS_FILE
  if path.exists():
    z, _ = readers.read_npz(path, PHOTOS_SPEC, fix=f"delete {path} and rerun")
    stats = suite_lib.PhotoStats(
        [str(p) for p in z["paths"]],
        {k[len("values_"):]: v for k, v in z.items() if k.startswith("values_")},
        z["embeddings"], refs_lib.Split(z["reference"], z["query"]), z["random"])
    added = [k for k in spec.layers if k not in stats.unit_values]
    if not added:
      return stats
    stats = suite_lib.add_layers(stats, model, params, added)   # a layer added on resume
  else:
    stats = suite_lib.photo_stats(model, params, judge, judge_params, photos,
                                  spec.layers, spec.suite)
  workdir_lib.save_npz(path, paths=np.array(stats.paths), embeddings=stats.embeddings,
                       reference=stats.split.reference, query=stats.split.query,
                       random=stats.random,
                       **{f"values_{k}": v for k, v in stats.unit_values.items()})
  return stats


def _save(folder: pathlib.Path, name: str, image) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  workdir_lib.save_image(folder / f"{name}.png",
                         Image.fromarray(plotting.to_uint8(np.asarray(image))))


def _unit_dir(layer: str, unit: int) -> str:
  return f"{workdir_lib.file_name(layer)}_{unit}"


def _save_queries(folder, stats, trials) -> None:
  for kind in ("query_max", "query_min"):
    for j, i in enumerate(getattr(trials, kind)):
      _save(folder, f"{kind}_{j}", images_lib.load_for_model(
          stats.paths[i], psychophysics.TRIAL_SIZE))


def _save_natural(out, stats, spec) -> None:
  for layer in spec.layers:
    for unit in spec.units:
      folder = out / "trials" / NATURAL / _unit_dir(layer, unit)
      if (folder / "query_min_0.png").exists():
        continue
      trials = suite_lib.unit_trials(stats, layer, unit, spec.suite)
      for kind in ("ref_max", "ref_min"):
        for j, i in enumerate(getattr(trials, kind)):
          _save(folder, f"{kind}_{j}", images_lib.load_for_model(
              stats.paths[i], psychophysics.TRIAL_SIZE))
      _save_queries(folder, stats, trials)


def _save_unit(out, param, score, stats, spec) -> dict:
  folder = out / "trials" / workdir_lib.file_name(param) / _unit_dir(score.layer, score.unit)
  for j in range(len(score.refs_max)):
    _save(folder, f"ref_max_{j}", score.refs_max[j])
    _save(folder, f"ref_min_{j}", score.refs_min[j])
  _save_queries(folder, stats, score.trials)
  record = report.unit_record(score, stats.paths, spec.suite.seed, spec.suite.resamples)
  _record_path(out, param, score.layer, score.unit).parent.mkdir(parents=True, exist_ok=True)
  workdir_lib.write_json(_record_path(out, param, score.layer, score.unit), record)
  return record


def _record_path(out, param, layer, unit) -> pathlib.Path:
  return out / "units" / workdir_lib.file_name(param) / f"{_unit_dir(layer, unit)}.json"


def _score_param(out, spec, param, model, params, judge, judge_params, stats, key, bar):
  for layer in spec.layers:
    todo = [u for u in spec.units if not _record_path(out, param, layer, u).exists()]
    for b in range(0, len(todo), spec.batch_units):
      batch = todo[b:b + spec.batch_units]
      bar.set_postfix(f"{param} {layer} units {batch[0]}-{batch[-1]}")
      scores = suite_lib.score_units(model, params, judge, judge_params, stats, layer,
                                     batch, spec.render_config(param), key, spec.suite)
      for score in scores:
        _save_unit(out, param, score, stats, spec)
      bar.update(len(batch))


def result(out: pathlib.Path, spec: RunSpec, judge: base.Model) -> dict:
  """``quality.json``'s content from the unit records of ``spec``."""
  s = spec.suite
  blocks = {}
  for param in spec.params:
    units = {report.unit_key(l, u): workdir_lib.read_json(_record_path(out, param, l, u))
             for l in spec.layers for u in spec.units}
    blocks[param] = {"summary": report.summarize(units, s.seed, s.resamples),
                     "units": units}
  layer = psychophysics.embedding_layer(judge)
  return {"model": spec.model, "judge": spec.judge,
          "embedding": f"{layer} averaged over space ({judge.layer(layer).depth} values)",
          "decision_rule": report.DECISION_RULE, "settings": spec.settings(),
          "params": blocks}


def run(spec: RunSpec, model: base.Model, params, judge: base.Model, judge_params,
        photos: Sequence[str], out: os.PathLike | str, key: jax.Array) -> dict:
  """Scores every unit of ``spec`` into ``out`` (resumable); returns the result.

  Length: a few named steps (check, lock, settings, photos, natural trials,
  each param, the three outputs).
  """
  check(spec, model, judge, photos)
  out = pathlib.Path(out)
  root = os.path.commonpath(photos) if len(photos) > 1 else os.path.dirname(photos[0])
  photos_id = workdir_lib.files_fingerprint(root, [os.path.relpath(p, root) for p in photos])
  with workdir_lib.lock(out):
    _record_settings(out, spec, photos_id)
    stats = _photo_stats(out, spec, model, params, judge, judge_params, photos)
    _save_natural(out, stats, spec)
    total = len(spec.params) * len(spec.layers) * len(spec.units)
    done = sum(_record_path(out, p, l, u).exists() for p in spec.params
               for l in spec.layers for u in spec.units)
    with progress.bar(total, "quality", unit="unit", initial=done) as bar:
      for param in spec.params:
        _score_param(out, spec, param, model, params, judge, judge_params, stats, key, bar)
    value = result(out, spec, judge)
    workdir_lib.write_json(out / "quality.json", value)
    workdir_lib.write_text(out / "quality.md", report.markdown_table(value))
    workdir_lib.write_with(out / "quality.png", lambda f: report.figure(value, f))
  return value


__all__ = ["RunSpec", "check", "result", "run"]
