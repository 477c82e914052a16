"""The resolved configuration of a run, recorded beside its outputs.

Every atlas run writes ``<workdir>/run_config.json`` before it starts: the
model and every setting of every stage, after presets, flags and model
defaults were applied, plus ``"built"``, the stages that have finished with
those settings (:func:`mark_built`). A later run in the same work directory
must agree on every setting of the built stages that shapes the outputs;
otherwise :func:`record` raises :class:`ConfigMismatchError` naming each
differing key with both values, before any work is done, so outputs built one
way are never resumed or mixed with outputs built another way. A stage that
failed (say, a grid finer than the data allows) is not built, so rerunning
with a corrected setting is accepted. Settings that only change how the work
is executed (batch sizes, loader threads, the viewer) may change freely.

Stages run separately (``experiments/collect.py`` then ``layout.py`` …) each
record their own sections; the file accumulates them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Mapping, Sequence

from atlasjax import workdir as workdir_lib
from atlasjax.atlas import icon_objective

RUN_CONFIG = "run_config.json"
# Keys that change how a run executes, not what it produces.
EXECUTION_ONLY = frozenset({
    "collect.batch_size", "collect.loader_threads", "collect.loader_workers",
    "atlas.chunk_size", "viewer",
})
# The icon objective: a form's name, or a custom objective's description,
# compared as one value by its structure (icon_objective.structural: the
# same family under another name is the same setting).
OBJECTIVE_KEY = "atlas.objective"


class ConfigMismatchError(ValueError):
  """A work directory built with different settings than this run's."""


def sections(config, model_name: str, names: tuple[str, ...] | None = None
             ) -> dict[str, Any]:
  """``{"model": name, "collect": {...}, ...}`` of a PipelineConfig.

  ``names`` keeps only those sections (a stage run on its own records its
  own settings, e.g. ``("collect",)``).
  """
  if hasattr(config, "atlas"):   # a custom icon objective, as JSON
    config = dataclasses.replace(config, atlas=config.atlas.described())
  tree = json.loads(json.dumps(dataclasses.asdict(config)))
  if names is not None:
    tree = {k: v for k, v in tree.items() if k in names}
  return {"model": model_name, **tree}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if f"{prefix}{key}" == OBJECTIVE_KEY:
      out[OBJECTIVE_KEY] = icon_objective.structural(value)
    elif isinstance(value, Mapping):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


BUILT = "built"


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]
                ) -> list[tuple[str, Any, Any]]:
  """``(key, recorded, current)`` for the built sections' differing keys."""
  built = set(recorded.get(BUILT, ()))
  if built:
    built.add("model")
  old = _flatten({k: v for k, v in recorded.items() if k in built})
  new = _flatten({k: v for k, v in current.items() if k in built})
  return [(k, old[k], new[k]) for k in sorted(old.keys() & new.keys())
          if k not in EXECUTION_ONLY and old[k] != new[k]]


def _read(path: pathlib.Path) -> dict:
  return json.loads(path.read_text()) if path.exists() else {}


def _write(path: pathlib.Path, tree: Mapping[str, Any]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  workdir_lib.write_text(path, json.dumps(tree, indent=1, sort_keys=True))


def record(workdir: os.PathLike | str, current: Mapping[str, Any]
           ) -> pathlib.Path:
  """Checks ``current`` against the work directory's built stages, then records it.

  ``current`` holds the sections this run uses (JSON-able; see
  :func:`sections`). Raises :class:`ConfigMismatchError` if a setting of a
  built stage differs; nothing is written then.
  """
  workdir = pathlib.Path(workdir)
  path = workdir / RUN_CONFIG
  current = json.loads(json.dumps(current))
  recorded = _read(path)
  diff = differences(recorded, current)
  if diff:
    listed = "; ".join(f"{k} = {old!r} there, {new!r} now" for k, old, new in diff)
    raise ConfigMismatchError(
        f"Work directory {workdir} was built with different settings: {listed}. "
        f"Use a new --workdir, or rerun with the settings in {path}.")
  merged = {**recorded, **current}
  if merged != recorded:
    _write(path, merged)
  return path


def mark_built(workdir: os.PathLike | str, names: Sequence[str]) -> None:
  """Records that the stages ``names`` finished with the recorded settings."""
  path = pathlib.Path(workdir) / RUN_CONFIG
  recorded = _read(path)
  built = sorted(set(recorded.get(BUILT, ())) | set(names))
  if built != recorded.get(BUILT):
    _write(path, {**recorded, BUILT: built})


def replace_section(workdir: os.PathLike | str, name: str,
                    values: Mapping[str, Any]) -> None:
  """Records ``values`` as section ``name``, replacing what was there.

  For a stage rebuilt on purpose with other settings
  (:func:`atlasjax.atlas.rebuild.rerender`): the record must then describe
  the outputs the work directory now holds, so later runs compare against
  them. The ``built`` list is kept.
  """
  path = pathlib.Path(workdir) / RUN_CONFIG
  recorded = _read(path)
  current = json.loads(json.dumps(dict(values)))
  if recorded.get(name) != current:
    _write(path, {**recorded, name: current})
