r"""What re-rendering an atlas's icons with your own objective costs.

  python bench/rerender_atlas.py --photos=40 --steps=32

Builds a small GoogLeNet atlas (collect → layout → icons → viewer, stage by
stage, timed), then re-renders its icons in place with a custom family
(``atlasjax.atlas.rerender``: the collection and layout kept), then runs the
same re-render again (it must resume: no render, no compile). Prints one
JSON line with the seconds of each, the compiles the last call ran and the
machine (load included: the stage times are only comparable within a run).
"""

import json
import pathlib
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import machine  # pylint: disable=g-import-not-at-top

from atlasjax import data as data_lib
from atlasjax import labels as labels_lib
from atlasjax import models
from atlasjax.atlas import collect
from atlasjax.atlas import layout
from atlasjax.atlas import pipeline
from atlasjax.atlas import rebuild
from atlasjax.atlas import render_atlas
from atlasjax.optvis import objectives
from atlasjax.optvis import render as render_lib

_PHOTOS = flags.DEFINE_integer("photos", 40, "Sample photos collected.")
_STEPS = flags.DEFINE_integer("steps", 32, "Steps per icon.")
_LAYER = flags.DEFINE_string("layer", "mixed4c", "Atlas layer.")


def push(direction):
  # The cell's raw direction, a plain dot product (no whitening).
  return objectives.direction(_LAYER.value, direction)


def _timed(fn, *args, **kwargs) -> float:
  start = time.perf_counter()
  fn(*args, **kwargs)
  return round(time.perf_counter() - start, 2)


def main(argv):
  del argv
  model, params = models.load()
  labels = labels_lib.load()
  work = pathlib.Path(tempfile.mkdtemp(prefix="rerender_bench_"))
  photos = work / "photos"
  photos.mkdir()
  for path in sorted(data_lib.sample_dir().glob("*.jpg"))[:_PHOTOS.value]:
    shutil.copy(path, photos / path.name)
  layer = _LAYER.value
  config = pipeline.PipelineConfig(
      collect=collect.CollectConfig(layers=(layer,), crops_per_image=2),
      layout=layout.LayoutConfig(layer=layer),
      atlas=render_atlas.AtlasConfig(layer=layer, grid_sizes=(4,),
                                     min_density=(2,), icon_size=64,
                                     steps=_STEPS.value))
  seconds = {
      "collect": _timed(collect.run, config.collect, model, params, photos,
                        work, labels),
      "layout": _timed(layout.run, config.layout, work, model=model),
      "icons": _timed(render_atlas.run, config.atlas, model, params, work, labels),
      "viewer": _timed(pipeline.write_viewer, work),
  }
  seconds["rerender"] = _timed(rebuild.rerender, work, model, params, labels,
                               objective=push)
  before = len(render_lib.cache_info().compiles)
  seconds["rerender_again"] = _timed(rebuild.rerender, work, model, params,
                                     labels, objective=push)
  atlas = json.loads((work / "atlas.json").read_text())
  print(json.dumps({
      "workload": f"GoogLeNet {layer} atlas, {_PHOTOS.value} photos x 2 crops, "
                  f"one 4x4 grid, 64 px icons, {_STEPS.value} steps",
      "seconds": seconds,
      "cells": len(atlas["grids"][0]["cells"]),
      "fidelity_after": atlas["grids"][0]["fidelity"],
      "compiles_in_rerender_again": len(render_lib.cache_info().compiles) - before,
      "machine": machine.describe()}))
  shutil.rmtree(work)


if __name__ == "__main__":
  app.run(main)
