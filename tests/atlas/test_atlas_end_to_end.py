"""A real atlas on a few sample photos: every stage, resume, fidelity, errors."""

import dataclasses
import json
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from atlasjax import progress
from atlasjax.atlas import collect
from atlasjax.atlas import grid as grid_lib
from atlasjax.atlas import layout
from atlasjax.atlas import pipeline
from atlasjax.atlas import render_atlas

N_IMAGES = 16

CONFIG = pipeline.PipelineConfig(
    collect=collect.CollectConfig(layers=("mixed4c",), crops_per_image=3,
                                  batch_size=16, shard_images=8),
    layout=layout.LayoutConfig(layer="mixed4c"),
    atlas=render_atlas.AtlasConfig(layer="mixed4c", grid_sizes=(3,),
                                   min_density=(2,), icon_size=64, steps=128,
                                   attempts=1, chunk_size=16),
)


@pytest.fixture(scope="module")
def built(googlenet, sample_dir, tmp_path_factory):
  model, params = googlenet
  from atlasjax import labels as labels_lib
  labels = labels_lib.load()
  images = tmp_path_factory.mktemp("photos")
  for path in sorted(sample_dir.glob("*.jpg"))[::50][:N_IMAGES]:
    os.symlink(path, images / path.name)
  workdir = tmp_path_factory.mktemp("atlas")
  with progress.capture() as events:
    path = pipeline.run(CONFIG, model, params, images, workdir, labels)
  return workdir, path, events, images, labels


def test_atlas_json_schema_and_files(built):
  workdir, path, _, _, labels = built
  atlas = json.loads(path.read_text())
  assert atlas["layer"] == "mixed4c" and atlas["model"] == "bvlc_googlenet"
  (g,) = atlas["grids"]
  assert g["size"] == 3 and (workdir / g["atlas"]).exists()
  directions = np.load(workdir / g["directions"])
  assert directions.dtype == np.float32 and directions.shape == (len(g["cells"]), 512)
  assert np.load(workdir / g["whitening"]).shape == (512, 512)
  assert len(g["cells"]) >= 4
  seen = set()
  for cell in g["cells"]:
    assert 0 <= cell["x"] < 3 and 0 <= cell["y"] < 3 and cell["count"] > 2
    assert (cell["x"], cell["y"]) not in seen
    seen.add((cell["x"], cell["y"]))
    assert Image.open(workdir / cell["icon"]).size == (64, 64)
    assert len(cell["top_classes"]) == 5
    assert cell["top_classes"][0]["name"] == labels.short_name(
        cell["top_classes"][0]["index"])
    assert all((pathlib.Path(atlas["images_root"]) / e).exists()
               for e in cell["examples"])
  assert sorted(c["direction"] for c in g["cells"]) == list(range(len(g["cells"])))
  atlas_png = Image.open(workdir / g["atlas"])
  assert atlas_png.size == (3 * 64, 3 * 64)
  # Cells without an icon stay white.
  empty = {(x, y) for x in range(3) for y in range(3)} - seen
  for x, y in empty:
    block = np.asarray(atlas_png)[y * 64:(y + 1) * 64, x * 64:(x + 1) * 64]
    assert (block == 255).all()
  assert (workdir / "index.html").exists()
  assert (workdir / "layout" / "scatter.png").exists()


def test_directions_are_cell_means(built):
  workdir, path, _, _, _ = built
  atlas = json.loads(path.read_text())
  c = collect.Collection.open(workdir)
  vectors = np.asarray(c.vectors_memmap("mixed4c"))
  xy = np.load(workdir / "layout" / "coords.npy")
  col, row = grid_lib.cell_of(xy, 3)
  directions = np.load(workdir / atlas["grids"][0]["directions"])
  for cell in atlas["grids"][0]["cells"]:
    members = (col == cell["x"]) & (row == cell["y"])
    assert members.sum() == cell["count"]
    np.testing.assert_allclose(directions[cell["direction"]],
                               vectors[members].mean(0), rtol=1e-4, atol=1e-5)


def test_icon_fidelity(built):
  workdir, path, _, _, _ = built
  fidelity = json.loads(path.read_text())["grids"][0]["fidelity"]
  assert fidelity["retrieval"] >= 0.8, fidelity
  assert fidelity["mean_cosine"] > 0.1, fidelity


def test_rerun_skips_finished_stages(built, googlenet):
  workdir, path, _, images, labels = built
  model, params = googlenet
  before = path.stat().st_mtime_ns
  with progress.capture() as events:
    pipeline.run(CONFIG, model, params, images, workdir, labels)
  notes = [e.message for e in events if e.kind == "note"]
  assert any("reusing" in line for line in notes)
  assert any("skipping" in line for line in notes)
  assert not any(e.desc.startswith("icons") for e in events)
  assert path.stat().st_mtime_ns == before


def test_grid_larger_than_data_fails_and_keeps_work(built, googlenet):
  workdir, _, _, _, labels = built
  model, params = googlenet
  config = dataclasses.replace(CONFIG.atlas, grid_sizes=(40,), min_density=(10,))
  before = sorted(p.name for p in (workdir / "collect").iterdir())
  with pytest.raises(grid_lib.EmptyGridError, match="40×40"):
    render_atlas.run(config, model, params, workdir, labels)
  assert sorted(p.name for p in (workdir / "collect").iterdir()) == before
  assert (workdir / "layout" / "coords.npy").exists()
  assert (workdir / "atlas.json").exists()


def test_shards_from_another_model_are_refused(built, toy):
  workdir, _, _, _, _ = built
  model, params = toy
  with pytest.raises(collect.CollectError, match="bvlc_googlenet"):
    render_atlas.run(CONFIG.atlas, model, params, workdir)


def test_layout_fit_sample_path_on_a_real_collection(built):
  workdir = built[0]
  config = layout.LayoutConfig(layer="mixed4c", fit_sample=30)
  info = layout.run(config, workdir, out_name="layout_sampled")
  out = workdir / "layout_sampled"
  xy = np.load(out / "coords.npy")
  n = len(collect.Collection.open(workdir).vectors_memmap("mixed4c"))
  assert info["n"] == n and xy.shape == (n, 2)
  assert xy.min() >= 0.0 and xy.max() <= 1.0
  assert info["settings"]["config"]["fit_sample"] == 30
  assert not (out / layout.PARTIAL_DIR).exists()   # Cleaned once saved.
