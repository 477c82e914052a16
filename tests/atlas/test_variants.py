"""Atlas variants: class selection, comparison axes, layer statistics, and a
small real class atlas."""

import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image

from atlasjax.atlas import collect
from atlasjax.atlas import grid as grid_lib
from atlasjax.atlas import render_atlas
from atlasjax.atlas import variants


def _brute_force_selection(attr, c, k):
  winners = {i for i in range(len(attr)) if max(range(attr.shape[1]),
                                                key=lambda j: (attr[i, j], -j)) == c}
  positive = sorted((i for i in range(len(attr)) if attr[i, c] > 0),
                    key=lambda i: (-attr[i, c], i))
  return sorted(winners | set(positive[:k]))


@pytest.mark.parametrize("k", [0, 1, 5, 1000])
def test_class_selection_matches_brute_force(k):
  rng = np.random.default_rng(0)
  attr = rng.normal(size=(300, 7)).astype(np.float16)
  attr[:, 3] -= 1.5   # Class 3 rarely wins and is mostly negative.
  for c in range(7):
    got = variants.select_class_samples(attr, c, k)
    assert got.tolist() == _brute_force_selection(attr.astype(np.float64), c, k)
  # Winners alone, then a strict superset with top-k.
  only = variants.select_class_samples(attr, 3, 0)
  assert set(only) == set(np.flatnonzero(attr.argmax(1) == 3))
  more = variants.select_class_samples(attr, 3, 20)
  assert set(only) < set(more) and len(more) <= len(only) + 20
  assert (attr[np.setdiff1d(more, only), 3] > 0).all()


def test_top_k_never_takes_non_positive_attributions():
  attr = np.array([[1.0, -1.0], [2.0, 0.0], [3.0, -0.5]])
  assert variants.select_class_samples(attr, 1, 10).tolist() == []
  pair = variants.select_pair_samples(attr, 0, 1, 1)
  assert pair.tolist() == [0, 1, 2]


def test_difference_axis_scales_clips_and_puts_right_positive():
  rng = np.random.default_rng(1)
  attr = rng.normal(size=(1000, 4))
  attr[0, 2], attr[0, 1] = 50.0, 0.0    # far right
  attr[1, 2], attr[1, 1] = 0.0, 50.0    # far left
  x, scale = variants.difference_axis(attr, left=1, right=2)
  diff = attr[:, 2] - attr[:, 1]
  assert scale == pytest.approx(np.percentile(np.abs(diff), 99))
  np.testing.assert_allclose(x, np.clip(diff / scale, -1, 1))
  assert x[0] == 1.0 and x[1] == -1.0
  assert (np.abs(x) < 1).mean() == pytest.approx(0.99, abs=0.002)
  assert (np.sign(x) == np.sign(diff)).all()
  # Swapping sides mirrors the axis.
  x_swapped, _ = variants.difference_axis(attr, left=2, right=1)
  np.testing.assert_allclose(x_swapped, -x)
  # All-equal attributions: no division by zero.
  flat, scale = variants.difference_axis(np.ones((5, 3)), 0, 1)
  assert scale == 1.0 and (flat == 0).all()


def test_comparison_binning_on_a_10x10_grid():
  x = np.array([-1.0, -0.81, -0.79, -0.01, 0.0, 0.79, 0.81, 1.0])
  y = np.array([0.0, 0.05, 0.15, 0.5, 0.5, 0.85, 0.95, 1.0])
  xy = variants.comparison_coords(x, y)
  col, row = grid_lib.cell_of(xy, 10)
  assert col.tolist() == [0, 0, 1, 4, 5, 8, 9, 9]
  assert row.tolist() == [9, 9, 8, 5, 5, 1, 0, 0]
  # Left of the centre line means more attribution to the left class.
  assert (col[x < 0] < 5).all() and (col[x > 0] >= 5).all()


def test_layer_split_into_exactly_two_cells():
  size = 4
  centre = lambda cx, cy: [(cx + 0.5) / size, 1 - (cy + 0.5) / size]
  # Layer A: 10 samples in cell (1, 1) and 6 in cell (3, 0).
  xy_a = np.array([centre(1, 1)] * 10 + [centre(3, 0)] * 6)
  # Layer B: A's first cell splits 5/5 into (0, 2) and (2, 3); the second one
  # stays together in (0, 2), which therefore fuses two A cells.
  xy_b = np.array([centre(0, 2)] * 5 + [centre(2, 3)] * 5 + [centre(0, 2)] * 6)
  stats = variants.layer_transfer(xy_a, xy_b, size, min_density=0)
  splits = {(r["x"], r["y"]): r for r in stats["splits"]}
  assert set(splits) == {(1, 1), (3, 0)}
  split = splits[(1, 1)]
  assert split["count"] == 10 and split["entropy_bits"] == pytest.approx(1.0)
  assert split["cells_for_coverage"] == 2
  assert {(c["x"], c["y"]): c["share"] for c in split["cells"]} == {
      (0, 2): 0.5, (2, 3): 0.5}
  whole = splits[(3, 0)]
  assert whole["entropy_bits"] == 0.0 and whole["cells_for_coverage"] == 1
  fusions = {(r["x"], r["y"]): r for r in stats["fusions"]}
  fused = fusions[(0, 2)]
  assert fused["count"] == 11 and fused["cells_for_coverage"] == 2
  assert [c["count"] for c in fused["cells"]] == [6, 5]   # sorted by share
  assert fusions[(2, 3)]["entropy_bits"] == 0.0
  # The density threshold hides sparse cells from the report only.
  stats = variants.layer_transfer(xy_a, xy_b, size, min_density=6)
  assert [(r["x"], r["y"]) for r in stats["splits"]] == [(1, 1)]
  assert stats["summary"]["splits"]["mean_entropy_bits"] == pytest.approx(1.0)


def test_coverage_counts_the_fewest_cells():
  source = np.zeros(10, int)
  target = np.array([0] * 7 + [1] * 2 + [2])   # 70 %, 20 %, 10 %
  (stats,) = variants.spread(source, target, 3, coverage=0.8).values()
  assert stats["cells_for_coverage"] == 2
  p = np.array([0.7, 0.2, 0.1])
  assert stats["entropy_bits"] == pytest.approx(-(p * np.log2(p)).sum(), abs=1e-6)
  (stats,) = variants.spread(source, target, 3, coverage=0.7).values()
  assert stats["cells_for_coverage"] == 1


# ----------------------------------------------------------------------------
# A real class atlas on a few sample photos.

N_IMAGES = 16
CLASS_NAME = "frying pan"
ATLAS = render_atlas.AtlasConfig(layer="mixed4c", grid_sizes=(4,), min_density=(1,),
                                 icon_size=64, steps=64, attempts=1)
COLLECT = collect.CollectConfig(layers=("mixed4c",), crops_per_image=3,
                                batch_size=24, shard_images=16)
TOP_K = 24


@pytest.fixture(scope="module")
def small(googlenet, sample_dir, tmp_path_factory):
  model, params = googlenet
  from atlasjax import labels as labels_lib
  labels = labels_lib.load()
  images = tmp_path_factory.mktemp("photos")
  pan = sample_dir / "n03400231_frying_pan.jpg"
  others = [p for p in sorted(sample_dir.glob("*.jpg"))[::50] if p != pan]
  for path in [pan] + others[:N_IMAGES - 1]:
    os.symlink(path, images / path.name)
  workdir = tmp_path_factory.mktemp("variants")
  variants.ensure_collection(COLLECT, model, params, images, workdir, labels)
  return workdir, labels


def test_class_atlas_end_to_end(small, googlenet):
  workdir, labels = small
  model, params = googlenet
  c = labels.lookup(CLASS_NAME)
  config = variants.ClassAtlasConfig(atlas=ATLAS, top_k=TOP_K)
  path = variants.class_atlas(config, model, params, workdir, c, labels)
  assert path == workdir / f"class_{c}" / "atlas.json"
  atlas = json.loads(path.read_text())
  attr = collect.Collection.open(workdir).load(["attributions/mixed4c"])[
      "attributions/mixed4c"]
  expected = variants.select_class_samples(attr, c, TOP_K)
  assert atlas["variant"]["class_name"] == CLASS_NAME
  assert atlas["variant"]["samples"] == len(expected) >= TOP_K // 2
  indices = np.load(workdir / f"class_{c}" / "layout" / "indices.npy")
  np.testing.assert_array_equal(indices, expected)
  coords = np.load(workdir / atlas["layout"]["coords"])
  assert coords.shape == (len(expected), 2)
  (g,) = atlas["grids"]
  assert g["atlas"] == f"class_{c}/grid_4/atlas.png"
  assert Image.open(workdir / g["atlas"]).size == (4 * 64, 4 * 64)
  assert len(g["cells"]) >= 1
  assert sum(cell["count"] for cell in g["cells"]) <= len(expected)
  for cell in g["cells"]:
    assert cell["count"] > 1
    assert Image.open(workdir / cell["icon"]).size == (64, 64)
    assert len(cell["top_classes"]) == 5
  # The icons are whitened with the whole collection's S, not the subset's.
  vectors = np.asarray(collect.Collection.open(workdir).vectors_memmap("mixed4c"))
  from atlasjax.atlas import layout
  np.testing.assert_allclose(np.load(workdir / g["whitening"]),
                             layout.whitening_matrix(vectors), rtol=1e-5)
  # The global layout is untouched.
  assert not (workdir / "layout").exists()


def test_class_without_samples_fails_clearly(small, googlenet):
  workdir, labels = small
  model, params = googlenet
  attr = collect.Collection.open(workdir).load(["attributions/mixed4c"])[
      "attributions/mixed4c"]
  never_wins = int(np.setdiff1d(np.arange(attr.shape[1]), attr.argmax(1))[0])
  config = variants.ClassAtlasConfig(atlas=ATLAS, top_k=0)
  with pytest.raises(variants.NotEnoughSamplesError, match="only 0 sample"):
    variants.class_atlas(config, model, params, workdir, never_wins, labels)
  # It is an EmptyGridError too, and nothing was written for the class.
  assert issubclass(variants.NotEnoughSamplesError, grid_lib.EmptyGridError)
  assert not (workdir / f"class_{never_wins}").exists()
  too_dense = dataclasses.replace(ATLAS, min_density=(10_000,))
  with pytest.raises(variants.NotEnoughSamplesError, match="at least 10001"):
    variants.class_atlas(variants.ClassAtlasConfig(atlas=too_dense), model, params,
                         workdir, labels.lookup(CLASS_NAME), labels)


def test_compare_classes_cells_and_figure(small, googlenet, monkeypatch):
  """The comparison's geometry and outputs; icons are stubbed (rendering is
  covered by the class atlas above)."""
  workdir, labels = small
  model, params = googlenet
  monkeypatch.setattr(
      render_atlas, "render_icons",
      lambda model, params, layer, directions, *a, **k: np.full(
          (len(directions), 64, 64, 3), 128, np.uint8))
  left, right = labels.lookup("wok"), labels.lookup(CLASS_NAME)
  config = variants.CompareClassesConfig(
      atlas=dataclasses.replace(ATLAS, grid_sizes=(10,), min_density=(0,)),
      top_k=TOP_K)
  result = variants.compare_classes(config, model, params, workdir, left, right,
                                    labels)
  folder = workdir / "compare_wok_frying_pan"
  assert json.loads((folder / "comparison.json").read_text()) == result
  assert result["left"]["name"] == "wok" and result["right"]["name"] == CLASS_NAME
  attr = collect.Collection.open(workdir).load(["attributions/mixed4c"])[
      "attributions/mixed4c"].astype(np.float64)
  indices = variants.select_pair_samples(attr, left, right, TOP_K)
  assert result["samples"] == len(indices)
  diff = attr[indices, right] - attr[indices, left]
  scale = np.percentile(np.abs(diff), 99)
  assert result["scale"] == pytest.approx(scale)
  # Every sample is in one reported cell, its column given by its difference.
  columns = np.minimum(np.floor((np.clip(diff / scale, -1, 1) + 1) / 2 * 10), 9)
  assert sum(c["count"] for c in result["cells"]) == len(indices)
  for cell in result["cells"]:
    members = columns == cell["x"]
    assert cell["count"] <= members.sum()
    assert np.sign(cell["mean_difference"]) == np.sign(cell["mean_x"])
    lo, hi = cell["x"] / 5 - 1, (cell["x"] + 1) / 5 - 1
    assert lo - 1e-6 <= cell["mean_x"] <= hi + 1e-6
    assert len(cell["top_classes"]) == 5
  by_column = {}
  for cell in result["cells"]:
    by_column[cell["x"]] = by_column.get(cell["x"], 0) + cell["count"]
  assert by_column == {int(x): int((columns == x).sum()) for x in np.unique(columns)}
  png = Image.open(workdir / result["png"])
  assert png.size == (10 * 64, 10 * 64 + variants.HEADER_PX)
