"""collect → layout → render_atlas in one work directory, resumable.

Each stage checks whether its outputs are complete and were made with the
same settings from the same inputs, and skips itself if so; otherwise it
resumes (collection shard by shard, icons chunk by chunk). Several layers can
be built in one run: the first is the main atlas (``atlas.json``), the others
write ``<layer>.atlas.json`` and are listed in the main one's ``other_layers``
for the viewer's layer switcher.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

from atlasjax import distributed
from atlasjax import labels as labels_lib
from atlasjax import progress
from atlasjax import workdir as workdir_lib
from atlasjax.atlas import collect as collect_lib
from atlasjax.atlas import layout as layout_lib
from atlasjax.atlas import render_atlas
from atlasjax.atlas import run_config
from atlasjax.models import base


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  collect: collect_lib.CollectConfig = collect_lib.CollectConfig()
  layout: layout_lib.LayoutConfig = layout_lib.LayoutConfig()
  atlas: render_atlas.AtlasConfig = render_atlas.AtlasConfig()
  viewer: bool = True


def _atlas_is_current(path: pathlib.Path, config: render_atlas.AtlasConfig,
                      workdir: pathlib.Path, fingerprint: str) -> bool:
  if not path.exists():
    return False
  atlas = json.loads(path.read_text())
  if (atlas.get("config") != render_atlas.config_json(config)
      or atlas.get("collection") != fingerprint):
    return False
  files = [g["atlas"] for g in atlas["grids"]] + [
      c["icon"] for g in atlas["grids"] for c in g["cells"]]
  return all((workdir / f).exists() for f in files)


def layer_paths(layer: str, main: bool) -> tuple[str, str]:
  """(layout folder, file prefix) of a layer's outputs in the work directory."""
  safe = workdir_lib.file_name(layer)
  return (layout_lib.LAYOUT_DIR, "") if main else (f"layout_{safe}", f"{safe}.")


def run(config: PipelineConfig, model: base.Model, params,
        images: os.PathLike | str, workdir: os.PathLike | str,
        labels: labels_lib.Labels | None = None) -> pathlib.Path:
  """Builds (or finishes) the atlas of every collected layer; returns atlas.json."""
  workdir = pathlib.Path(workdir)
  # Many processes: all collect and render their shares; process 0 alone runs
  # the layout (one UMAP fit), holds the lock and writes shared files.
  lay = distributed.layout()
  # Validate every stage's settings and the collection's inputs before
  # anything is written (the layout and icons also need earlier stages'
  # outputs, which their own plans check when they start).
  collect_lib.plan(config.collect, model, params, images, workdir)
  for layer in config.collect.layers:
    layout_lib.check_config(dataclasses.replace(config.layout, layer=layer))
    render_atlas.check_config(dataclasses.replace(config.atlas, layer=layer), model,
                              params)
  with workdir_lib.lock(workdir, take=lay.is_main):
    return _run_locked(config, model, params, images, workdir, labels, lay)


def _run_locked(config: PipelineConfig, model: base.Model, params, images,
                workdir: pathlib.Path, labels, lay) -> pathlib.Path:
  """:func:`run`'s stages, under the work directory's lock."""
  # Refuse a work directory built with other settings before doing any work.
  run_config.record(workdir, run_config.sections(config, model.name))
  collect_lib.run(config.collect, model, params, images, workdir, labels)
  if lay.is_main:
    run_config.mark_built(workdir, ("collect",))
  collection = collect_lib.Collection.open(workdir)
  fingerprint = layout_lib.collection_fingerprint(collection)
  others = []
  for i, layer in enumerate(config.collect.layers):
    layout_name, prefix = layer_paths(layer, main=i == 0)
    layout_config = dataclasses.replace(config.layout, layer=layer)
    atlas_config = dataclasses.replace(config.atlas, layer=layer)
    if lay.is_main:
      layout_lib.run(layout_config, workdir, out_name=layout_name, model=model)
    distributed.barrier(f"layout:{workdir.resolve() / layout_name}")
    path = workdir / f"{prefix}{render_atlas.ATLAS_JSON}"
    if _atlas_is_current(path, atlas_config, workdir, fingerprint):
      progress.note(f"atlas: {path} is complete, skipping")
    else:
      render_atlas.run(atlas_config, model, params, workdir, labels,
                       layout_name=layout_name, prefix=prefix)
      if lay.is_main:
        atlas = json.loads(path.read_text())
        atlas["collection"] = fingerprint
        workdir_lib.write_json(path, atlas)
    if i:
      others.append(path.name)
  main = workdir / render_atlas.ATLAS_JSON
  if lay.is_main:
    atlas = json.loads(main.read_text())
    if atlas.get("other_layers", []) != others:
      atlas["other_layers"] = others
      workdir_lib.write_json(main, atlas)
    run_config.mark_built(workdir, ("layout", "atlas"))
    if config.viewer:
      write_viewer(workdir)
  distributed.barrier(f"pipeline-done:{workdir.resolve()}")
  return main


def write_viewer(workdir: pathlib.Path) -> pathlib.Path | None:
  """Writes the offline viewer into ``workdir`` and notes where to open it."""
  from atlasjax import viewer  # The viewer is optional for library users.
  index = viewer.write_viewer(workdir)
  progress.note(f"viewer: open {index} in a browser (or serve {workdir} with "
                "`python -m http.server`)")
  return index
