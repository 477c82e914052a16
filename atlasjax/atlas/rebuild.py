"""Re-rendering a finished atlas's icons with other icon settings.

:func:`rerender` takes an atlas work directory (``atlas.json`` and the other
layers it lists) and renders every grid's icons again with another objective
(a form, your own family ``direction -> Objective``, a registered name or
``"package.module:factory"``; see :mod:`atlasjax.atlas.icon_objective`),
parameterization, transforms or any other field of
:class:`~atlasjax.atlas.render_atlas.AtlasConfig` but the layer. The
collection and the layout are kept; what follows from the icons is rebuilt:
each grid's ``atlas.png`` and icons, the fidelity figures in ``atlas.json``,
the run record's ``atlas`` section and the viewer.

It keeps the work-directory rules of the pipeline: every setting is
validated (a custom objective checked on the model) before anything is
written; the work runs under the directory's lock with atomic writes; icons
render into chunk caches keyed by the new settings (a custom objective by its
structure), so an interrupted rerender resumes where it stopped and icons of
other settings are never reused.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Sequence

from atlasjax import distributed
from atlasjax import labels as labels_lib
from atlasjax import workdir as workdir_lib
from atlasjax.atlas import pipeline
from atlasjax.atlas import render_atlas
from atlasjax.atlas import run_config
from atlasjax.models import base

# Settings a rerender cannot change: each atlas keeps its layer.
FIXED = ("layer",)
# AtlasConfig fields stored as JSON lists in atlas.json.
TUPLE_FIELDS = ("grid_sizes", "min_density")


class RerenderError(render_atlas.AtlasError):
  """A work directory or a change a rerender cannot use (one line)."""


@dataclasses.dataclass(frozen=True)
class _Job:
  """One layer's atlas to re-render."""
  path: pathlib.Path
  layout_name: str
  prefix: str
  recorded: dict
  config: render_atlas.AtlasConfig


def recorded_config(atlas: dict, changes: dict[str, Any]
                    ) -> render_atlas.AtlasConfig:
  """The :class:`AtlasConfig` an ``atlas.json`` was rendered with, changed.

  A custom objective is recorded only as its description, so re-rendering
  an atlas made with one needs ``objective`` among ``changes``.
  """
  fields = {f.name for f in dataclasses.fields(render_atlas.AtlasConfig)}
  unknown = sorted(set(changes) - fields)
  if unknown:
    raise RerenderError(f"rerender: unknown icon setting(s) {', '.join(unknown)}; "
                        f"use fields of AtlasConfig: {', '.join(sorted(fields))}.")
  fixed = [k for k in FIXED if k in changes]
  if fixed:
    raise RerenderError(f"rerender keeps each atlas's {', '.join(fixed)}; "
                        "build another layer with experiments/atlas.py.")
  values = {k: v for k, v in atlas.get("config", {}).items() if k in fields}
  if isinstance(values.get("objective"), dict) and "objective" not in changes:
    raise RerenderError(
        f"the icons of the {atlas.get('layer')} atlas were rendered with a custom "
        f"objective ({values['objective']}); pass objective= (the family, a "
        "registered name or 'package.module:factory') to re-render them.")
  values.update(changes)
  for name in TUPLE_FIELDS:
    values[name] = tuple(values[name])
  return render_atlas.AtlasConfig(**values)


def _jobs(workdir: pathlib.Path, changes: dict[str, Any],
          layers: Sequence[str] | None) -> list[_Job]:
  """The main atlas and every layer it lists (or those of ``layers``), each
  with its new config."""
  main_path = workdir / render_atlas.ATLAS_JSON
  if not main_path.is_file():
    raise RerenderError(f"No {main_path}: build the atlas first "
                        "(experiments/atlas.py), then re-render it.")
  main = workdir_lib.read_json(main_path)
  names = [render_atlas.ATLAS_JSON, *main.get("other_layers", [])]
  recorded = [main] + [workdir_lib.read_json(workdir / n) for n in names[1:]]
  built = [r["layer"] for r in recorded]
  missing = sorted(set(layers or ()) - set(built))
  if missing:
    raise RerenderError(f"{workdir} has no atlas of {', '.join(missing)}; its "
                        f"layers: {', '.join(built)}.")
  jobs = []
  for i, (name, atlas) in enumerate(zip(names, recorded)):
    if layers is None or atlas["layer"] in layers:
      layout_name, prefix = pipeline.layer_paths(atlas["layer"], main=i == 0)
      jobs.append(_Job(workdir / name, layout_name, prefix, atlas,
                       recorded_config(atlas, changes)))
  return jobs


def _keep_extras(job: _Job, atlas: dict) -> dict:
  """``atlas`` with what the pipeline added to the old one (the collection's
  fingerprint, ``other_layers``, a variant's description) kept."""
  extras = {k: v for k, v in job.recorded.items() if k not in atlas}
  if extras:
    atlas = {**atlas, **extras}
    workdir_lib.write_json(job.path, atlas)
  return atlas


def rerender(workdir: os.PathLike | str, model: base.Model, params,
             labels: labels_lib.Labels | None = None, *,
             layers: Sequence[str] | None = None, viewer: bool = True,
             **changes: Any) -> list[pathlib.Path]:
  """Re-renders every atlas layer of ``workdir`` with ``changes``; rebuilds the rest.

  Args:
    workdir: a finished atlas work directory (``experiments/atlas.py``).
    model: the network the atlas was collected with.
    params: its parameters.
    labels: class names of the cells (as :func:`render_atlas.run`; without
      them cells are labelled by class index).
    layers: the layers to re-render (default: every layer of the work
      directory's atlas; a family written for one layer's width should name
      that layer).
    viewer: rewrite the browser viewer afterwards.
    **changes: fields of :class:`AtlasConfig` to change, e.g.
      ``objective=lambda d: objectives.direction("mixed4c", d)``,
      ``param="mine"``, ``transforms="mylab.pieces:jitter_only"``, ``steps=``.

  Returns:
    The rewritten ``atlas.json`` files, the main one first.
  """
  workdir = pathlib.Path(workdir)
  jobs = _jobs(workdir, changes, layers)
  for job in jobs:   # every layer validated before anything is written
    render_atlas.plan(job.config, model, workdir, job.layout_name, params)
  main = distributed.layout().is_main
  with workdir_lib.lock(workdir, take=main):
    for job in jobs:
      atlas = render_atlas.run(job.config, model, params, workdir, labels,
                               layout_name=job.layout_name, prefix=job.prefix)
      if main:
        _keep_extras(job, atlas)
    if main:
      if jobs[0].path.name == render_atlas.ATLAS_JSON:   # the main layer's
        run_config.replace_section(workdir, "atlas",
                                   render_atlas.config_json(jobs[0].config))
      if viewer:
        pipeline.write_viewer(workdir)
  return [job.path for job in jobs]
