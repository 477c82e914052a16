r"""Throughput of the atlas pipeline's stages on the default run.

  python bench/atlas_bench.py [--images=DIR] [--limit=N] [--workdir=DIR]

Runs collect → layout → icons (the main-job defaults of experiments/atlas.py)
in a fresh work directory and prints one JSON line per stage: collection
images/s and samples/s, layout seconds, icon rendering icons/s and
image-steps/s (first chunk, which includes compilation, reported apart).
"""

import dataclasses
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import machine  # pylint: disable=g-import-not-at-top
from atlasjax import data as data_lib
from atlasjax import labels as labels_lib
from atlasjax import models
from atlasjax.atlas import collect
from atlasjax.atlas import grid as grid_lib
from atlasjax.atlas import layout
from atlasjax.atlas import render_atlas

_IMAGES = flags.DEFINE_string("images", None, "Photos (default: the sample).")
_LIMIT = flags.DEFINE_integer("limit", 0, "Use only the first N photos (0 = all).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (default: temp).")
_CROPS = flags.DEFINE_integer("crops_per_image", 4, "Crops per image.")
_GRID = flags.DEFINE_integer("grid", 20, "Grid size whose icons are rendered.")
_DENSITY = flags.DEFINE_integer("min_density", 3, "Minimum cell count.")
_STEPS = flags.DEFINE_integer("steps", 256, "Icon optimization steps.")
_ICON = flags.DEFINE_integer("icon_size", 80, "Icon size.")
_CHUNK = flags.DEFINE_integer("chunk_size", 64, "Icons per compiled batch.")


def emit(**fields):
  print(json.dumps({**fields, "machine": machine.describe()}), flush=True)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  model, params = models.load()
  labels = labels_lib.load()
  src = pathlib.Path(_IMAGES.value or data_lib.sample_dir())
  workdir = pathlib.Path(_WORKDIR.value or tempfile.mkdtemp(prefix="atlas_bench_"))
  images = src
  if _LIMIT.value:
    images = workdir / "photos"
    images.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.glob("*"))[:_LIMIT.value]:
      if not (images / p.name).exists():
        os.symlink(p.resolve(), images / p.name)
  config = collect.CollectConfig(crops_per_image=_CROPS.value)
  shutil.rmtree(workdir / "collect", ignore_errors=True)
  t = time.perf_counter()
  manifest = collect.run(config, model, params, images, workdir, labels)
  seconds = time.perf_counter() - t
  n_images = manifest["settings"]["n_images"]
  emit(bench="atlas_collect", layer="mixed4c", images=n_images,
       samples=manifest["samples"], crops_per_image=_CROPS.value,
       attributions=True, seconds=round(seconds, 1),
       images_per_sec=round(n_images / seconds, 2),
       samples_per_sec=round(manifest["samples"] / seconds, 2))
  shutil.rmtree(workdir / "layout", ignore_errors=True)
  t = time.perf_counter()
  info = layout.run(layout.LayoutConfig(), workdir)
  emit(bench="atlas_layout", n=info["n"], umap=info["umap"],
       seconds=round(time.perf_counter() - t, 1), umap_seconds=info["seconds"])
  c = collect.Collection.open(workdir)
  vectors = np.asarray(c.vectors_memmap("mixed4c"))
  xy = np.load(workdir / "layout" / "coords.npy")
  g = grid_lib.build_grid(xy, vectors, _GRID.value, _DENSITY.value)
  whitening = np.load(workdir / "layout" / "whitening.npy")
  cfg = render_atlas.AtlasConfig(icon_size=_ICON.value, steps=_STEPS.value,
                                 attempts=1, chunk_size=_CHUNK.value)
  n = len(g)
  chunk = min(_CHUNK.value, n)
  key = jax.random.PRNGKey(0)
  t = time.perf_counter()
  render_atlas.render_icons(model, params, "mixed4c", g.directions[:chunk],
                            whitening, dataclasses.replace(cfg, chunk_size=chunk),
                            key)
  first = time.perf_counter() - t
  t = time.perf_counter()
  render_atlas.render_icons(model, params, "mixed4c", g.directions[:chunk][::-1].copy(),
                            whitening, dataclasses.replace(cfg, chunk_size=chunk),
                            key)
  steady = time.perf_counter() - t
  emit(bench="atlas_icons", grid=_GRID.value, cells=n, batch=chunk,
       icon_size=_ICON.value, steps=_STEPS.value, layer="mixed4c",
       first_chunk_seconds_with_compile=round(first, 1),
       icons_per_sec=round(chunk / steady, 3),
       image_steps_per_sec=round(chunk * _STEPS.value / steady, 1))


if __name__ == "__main__":
  app.run(main)
