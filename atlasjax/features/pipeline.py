"""A dictionary for one layer, end to end, in one work directory.

``run`` reads a folder of photos and leaves in ``workdir``:

* ``positions/train`` and ``positions/heldout``: all-positions collections
  (:mod:`atlasjax.features.positions`); every ``heldout_every``-th photo (in
  file order) is held out for evaluation and never trained on;
* ``train_config.json``, ``checkpoints/``: the training state
  (:mod:`atlasjax.features.train`);
* ``dictionary.npz``: the interchange file (:mod:`atlasjax.features.sae`);
* ``metrics.json``: held-out R², mean L0, dead fraction, training vectors/s.

Every stage resumes: a rerun reuses finished shards and the latest checkpoint.
The run is a :class:`atlasjax.workdir.Stage`: settings and photos are checked
before anything is written, the work directory's lock is held throughout, and
a folder whose earlier run was made from other inputs (photo contents, the
weights' bytes, the model, any setting: ``dictionary.inputs.json``) is
refused with one line instead of resumed. Photo names that are not valid
UTF-8 are skipped with a warning, as the atlas's collect stage does.
:func:`stability` trains the same dictionary from a second seed and reports
how well the two match (Hungarian pairing on decoder cosines).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Sequence

import numpy as np

from atlasjax import images as images_lib
from atlasjax import progress
from atlasjax import workdir as workdir_lib
from atlasjax.features import positions as positions_lib
from atlasjax.features import sae
from atlasjax.features import store
from atlasjax.features import train as train_lib
from atlasjax.models import base

DICTIONARY_FILE = "dictionary.npz"
METRICS_FILE = "metrics.json"
STABILITY_FILE = "stability.json"
# The stage's name in its work directory (its fingerprint file is
# ``dictionary.inputs.json``).
STAGE = "dictionary"
# One photo in this many is held out (ImageNet-style 90/10 split).
DEFAULT_HELDOUT_EVERY = 10


@dataclasses.dataclass(frozen=True)
class DictionaryConfig:
  """What to collect and how to train.

  Attributes:
    layer: the spatial layer.
    train: a :class:`~atlasjax.features.train.TrainConfig`.
    size: input side (default the model's).
    heldout_every: hold out one photo in this many.
    max_photos: use at most this many photos (in file order; None: all).
    shard_photos: photos per collection shard.
  """
  layer: str
  train: train_lib.TrainConfig = train_lib.TrainConfig()
  size: int | None = None
  heldout_every: int = DEFAULT_HELDOUT_EVERY
  max_photos: int | None = None
  shard_photos: int = positions_lib.DEFAULT_SHARD_PHOTOS


def split(paths: Sequence[str], heldout_every: int) -> tuple[list[str], list[str]]:
  """``(train, heldout)``: every ``heldout_every``-th path is held out."""
  if heldout_every < 2:
    raise ValueError(f"heldout_every={heldout_every}: pass 2 or more (one "
                     "photo in that many is held out).")
  heldout = [p for i, p in enumerate(paths) if i % heldout_every == heldout_every - 1]
  train = [p for i, p in enumerate(paths) if i % heldout_every != heldout_every - 1]
  if not heldout:
    raise ValueError(f"{len(paths)} photo(s) leave none held out with one in "
                     f"{heldout_every}; add photos or lower heldout_every.")
  return train, heldout


def photos(config: DictionaryConfig, images: os.PathLike | str) -> list[str]:
  """The photos a run uses: ``images`` listed (names that are not UTF-8
  skipped with a warning), at most ``config.max_photos`` in file order."""
  return workdir_lib.utf8_names(images_lib.list_images(images),
                                "dictionary")[:config.max_photos]


def fingerprint(config: DictionaryConfig, model: base.Model, params,
                paths: Sequence[str]) -> dict:
  """What the dictionary depends on: the photos' and weights' content, the
  model and every setting (see :class:`atlasjax.workdir.Stage`)."""
  return {"model": model.name, "weights": workdir_lib.params_fingerprint(params),
          "photos": workdir_lib.photos_fingerprint(paths), "n_photos": len(paths),
          "layer": config.layer, "size": config.size or model.input_size,
          "heldout_every": config.heldout_every, "max_photos": config.max_photos,
          "shard_photos": config.shard_photos, "train": config.train.to_json()}


def stage(config: DictionaryConfig, model: base.Model, params,
          paths: Sequence[str], workdir: os.PathLike | str) -> workdir_lib.Stage:
  """The dictionary :class:`~atlasjax.workdir.Stage` of ``workdir``, its
  settings validated (raises before anything is written)."""
  model.layer(config.layer)
  if not paths:
    raise ValueError("No photos to collect; pass a folder of photos.")
  split(paths, config.heldout_every)
  result = workdir_lib.Stage(pathlib.Path(workdir), STAGE,
                             fingerprint(config, model, params, paths))
  result.check()
  return result


def collect(config: DictionaryConfig, model: base.Model, params,
            images: os.PathLike | str | Sequence[str], workdir: os.PathLike | str):
  """``(train, heldout)`` :class:`Positions` of ``images`` (a folder, or the
  list :func:`photos` made of it; resumable)."""
  paths = (photos(config, images) if isinstance(images, (str, os.PathLike))
           else list(images))
  train, heldout = split(paths, config.heldout_every)
  folder = pathlib.Path(workdir) / "positions"
  kw = dict(size=config.size, shard_photos=config.shard_photos)
  with workdir_lib.lock(workdir):
    return (positions_lib.collect(model, params, train, config.layer,
                                  folder / "train", **kw),
            positions_lib.collect(model, params, heldout, config.layer,
                                  folder / "heldout", **kw))


def fit(config: train_lib.TrainConfig, train: positions_lib.Positions,
        heldout: positions_lib.Positions, workdir: os.PathLike | str,
        info: dict | None = None) -> dict:
  """Trains, evaluates and writes ``dictionary.npz`` and ``metrics.json``."""
  workdir = pathlib.Path(workdir)
  with workdir_lib.lock(workdir):
    return _fit(config, train, heldout, workdir, info)


def _fit(config, train, heldout, workdir, info) -> dict:
  # orbax writes and prunes checkpoints itself: its folder is checked here.
  workdir_lib.make_dirs(workdir / train_lib.CHECKPOINTS)
  result = train_lib.train(config, train, workdir)
  dead = np.asarray(result["state"]["since_fired"]) >= config.dead_after
  metrics = {**(info or {}),
             **train_lib.evaluate(result["dictionary"], heldout, dead),
             "training_vectors_per_s": result["vectors_per_s"],
             "train_vectors": train.rows, "steps": result["steps"],
             "config": config.to_json()}
  sae.save(result["dictionary"], workdir / DICTIONARY_FILE)
  store.save_json(workdir / METRICS_FILE, metrics)
  progress.note(f"dictionary: R² {metrics['r2']:.4f}, L0 {metrics['mean_l0']:.1f}, "
                f"dead {metrics['dead_fraction']:.3f}; wrote "
                f"{workdir / DICTIONARY_FILE} and {METRICS_FILE}")
  return metrics


def run(config: DictionaryConfig, model: base.Model, params,
        images: os.PathLike | str, workdir: os.PathLike | str) -> dict:
  """Collects, trains and evaluates; returns the metrics (see the module doc).

  Raises (before writing anything) ``ValueError`` for bad settings and
  :class:`atlasjax.workdir.StageMismatch` for a work directory made from
  other inputs; :class:`atlasjax.workdir.WorkdirError` if another run holds it.
  """
  paths = photos(config, images)
  run_stage = stage(config, model, params, paths, workdir)
  with run_stage.run():
    train, heldout = collect(config, model, params, paths, workdir)
    info = {"model": model.name, "weights": run_stage.fingerprint["weights"],
            "layer": config.layer,
            "train_photos": train.manifest["settings"]["photos"],
            "heldout_photos": heldout.manifest["settings"]["photos"]}
    return fit(config.train, train, heldout, workdir, info)


def check_trained_on(workdir: os.PathLike | str, model: base.Model, params) -> dict:
  """``workdir``'s ``metrics.json``, checked to come from ``model`` with
  these weights (a dictionary of other weights labels features that mean
  nothing here); raises ``ValueError`` naming the difference."""
  metrics = store.load_json(pathlib.Path(workdir) / METRICS_FILE)
  if metrics.get("model") not in (None, model.name):
    raise ValueError(f"{workdir}'s dictionary was trained on {metrics['model']}, "
                     f"not {model.name}; pass the same --model.")
  weights = metrics.get("weights")
  if weights is not None and weights != workdir_lib.params_fingerprint(params):
    raise ValueError(f"{workdir}'s dictionary was trained on other weights of "
                     f"{model.name} (fingerprint {weights}); pass the same "
                     "--data/--weights.")
  return metrics


def stability(config: DictionaryConfig, workdir: os.PathLike | str,
              seed: int) -> dict:
  """Trains ``seed``'s dictionary beside ``workdir``'s and matches the two.

  The second run lives in ``workdir/seed_<seed>/`` and reuses the collected
  positions. Writes and returns ``stability.json`` (see
  :func:`atlasjax.features.sae.match`; per-feature pairs included).
  """
  workdir = pathlib.Path(workdir)
  if seed == config.train.seed:
    raise ValueError(f"The second seed must differ from the first ({seed}).")
  train = positions_lib.Positions(workdir / "positions" / "train")
  heldout = positions_lib.Positions(workdir / "positions" / "heldout")
  other = workdir / f"seed_{seed}"
  with workdir_lib.lock(workdir):
    fit(dataclasses.replace(config.train, seed=seed), train, heldout, other)
    matched = sae.match(sae.load(workdir / DICTIONARY_FILE),
                        sae.load(other / DICTIONARY_FILE))
    matched["seeds"] = [config.train.seed, seed]
    store.save_json(workdir / STABILITY_FILE, matched)
  progress.note(f"stability: seeds {config.train.seed} and {seed}: mean matched "
                f"decoder cosine {matched['mean_cosine']:.3f}, "
                f"{matched['fraction_above_0.9']:.1%} above 0.9")
  return matched
