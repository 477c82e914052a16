"""Layout (whitening, PCA, UMAP, normalisation) and grid binning."""

import numpy as np
import pytest

from atlasjax import models
from atlasjax import progress
from atlasjax.atlas import grid as grid_lib
from atlasjax.atlas import layout


def test_whitening_is_inverse_second_moment():
  rng = np.random.default_rng(0)
  a = np.abs(rng.normal(size=(2000, 12)) @ rng.normal(size=(12, 12)))
  s = layout.whitening_matrix(a, ridge=0.0)
  gram = a.T @ a / len(a)
  np.testing.assert_allclose(s @ gram, np.eye(12), atol=1e-3)
  # Whitened vectors (A S^½) have identity second moment.
  w, v = np.linalg.eigh(s.astype(np.float64))
  half = v @ np.diag(np.sqrt(w)) @ v.T
  white = a @ half
  np.testing.assert_allclose(white.T @ white / len(a), np.eye(12), atol=1e-3)


def test_whitening_survives_dead_channels():
  a = np.random.default_rng(1).random((100, 6))
  a[:, 2] = 0.0  # A channel that never fires: AᵀA/N is singular.
  s = layout.whitening_matrix(a)
  assert np.isfinite(s).all()


def test_pca_keeps_the_top_variance_axes():
  rng = np.random.default_rng(2)
  a = rng.normal(size=(500, 5)) * np.array([10, 5, 1, 0.1, 0.01])
  reduced = layout.pca_reduce(a, 2)
  np.testing.assert_allclose(np.var(reduced, axis=0), [100, 25], rtol=0.2)


def _lucid_normalize_layout(layout, lo_p=1, hi_p=99, margin=0.1):
  """Lucid's notebook, with its margins made symmetric (see layout_bounds)."""
  mins = np.percentile(layout, lo_p, axis=0)
  maxs = np.percentile(layout, hi_p, axis=0)
  span = maxs - mins
  clipped = np.clip(layout, mins - margin * span, maxs + margin * span)
  clipped = clipped - clipped.min(axis=0)
  return clipped / clipped.max(axis=0)


def test_normalize_layout_is_the_notebooks_with_a_margin():
  xy = np.random.default_rng(3).normal(size=(1000, 2))
  xy[0] = [1e6, -1e6]
  out = layout.normalize_layout(xy)
  np.testing.assert_allclose(out, _lucid_normalize_layout(xy), atol=1e-6)
  assert out.min() == 0.0 and out.max() == 1.0
  assert (out[0] == [1.0, 0.0]).all()   # the outlier is clipped, not scaling all
  assert 0.3 < np.median(out) < 0.7
  # A point just past the 99th percentile keeps its own place inside the margin.
  lo, hi = np.percentile(xy, [1, 99], axis=0)
  inside = np.flatnonzero((xy[:, 0] > hi[0]) & (xy[:, 0] < hi[0] + 0.1 * (hi - lo)[0]))
  assert inside.size and (out[inside, 0] < 1.0).all()
  assert np.flatnonzero(layout.layout_outliers(xy)).tolist() == [
      i for i in range(1000) if (out[i] == 0).any() or (out[i] == 1).any()]


def test_planted_outliers_stay_out_of_the_edge_cells():
  # Four tight clusters at the corners of the square plus 12 planted
  # outliers far outside it, in random directions.
  rng = np.random.default_rng(11)
  corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
  which = rng.integers(0, 4, 2000)
  xy = corners[which] + rng.normal(scale=0.08, size=(2000, 2))
  angle = rng.uniform(0, 2 * np.pi, 12)
  planted = 0.5 + rng.uniform(5, 50, (12, 1)) * np.c_[np.cos(angle), np.sin(angle)]
  xy = np.concatenate([xy, planted])
  vectors = np.concatenate([np.eye(4)[which], np.full((12, 4), -1.0)])
  outliers = layout.layout_outliers(xy)
  assert outliers[2000:].all()                    # every planted point flagged
  assert outliers[:2000].mean() < 0.01           # and almost nothing else
  norm = layout.normalize_layout(xy)
  g = grid_lib.build_grid(norm, vectors, size=10, min_density=3, exclude=outliers)
  # Each kept cell averages one cluster only: its direction is one-hot, with
  # no planted (-1) vectors mixed in, edge cells included.
  assert (g.directions >= 0).all()
  assert np.allclose(g.directions.max(axis=1), 1.0)
  cells = grid_lib.flat_cells(norm, 10, exclude=outliers)
  assert (cells == 100).sum() == outliers.sum() and cells.max() == 100
  # Without excluding them (the old normalisation) the planted points land
  # on edge cells and drag those cells' averages negative.
  old = layout.normalize_layout(xy, margin=0.0)
  g_old = grid_lib.build_grid(old, vectors, size=10, min_density=3)
  assert (g_old.directions < 0).any()


def test_presets_follow_the_paper():
  googlenet = models.get("bvlc_googlenet")
  assert layout.preset_for(googlenet, "mixed4c") == layout.UmapPreset(50, 0.05, "cosine")
  assert layout.preset_for(googlenet, "mixed5b") == layout.UmapPreset(50, 0.05, "cosine")
  assert layout.preset_for(googlenet, "mixed3a") == layout.UmapPreset(200, 0.05, "euclidean")
  assert layout.PRESET_CLASS_ATLAS == layout.UmapPreset(20, 0.01, "cosine")
  c = layout.LayoutConfig(layer="mixed3b", n_neighbors=7)
  assert c.umap_params(googlenet) == layout.UmapPreset(7, 0.05, "euclidean")
  # By stride, not by name: EfficientNet-Lite0's stride-8 block is early.
  lite = models.get("efficientnet_lite0")
  early = [l.name for l in lite.layers if lite.is_early(l.name)]
  assert early and lite.layer(early[-1]).stride == 8
  assert layout.preset_for(lite, early[-1]) == layout.PRESET_MIXED3
  assert layout.preset_for(lite, lite.default_layer) == layout.PRESET_MIXED4_5


def test_umap_is_seeded():
  v = np.random.default_rng(4).random((60, 8)).astype(np.float32)
  p = layout.UmapPreset(10, 0.1, "cosine")
  a = layout.umap_layout(v, p, seed=3, n_epochs=50)
  b = layout.umap_layout(v, p, seed=3, n_epochs=50)
  np.testing.assert_array_equal(a, b)


def test_grid_binning_matches_brute_force():
  rng = np.random.default_rng(5)
  xy = rng.random((500, 2))
  xy[:3] = [[0.0, 0.0], [1.0, 1.0], [0.999, 0.0]]
  vectors = rng.normal(size=(500, 4))
  attr = rng.normal(size=(500, 7))
  g = grid_lib.build_grid(xy, vectors, size=5, min_density=15, attributions=attr)
  for i in range(len(g)):
    x, y = g.x[i], g.y[i]
    members = [j for j in range(500)
               if min(int(xy[j, 0] * 5), 4) == x and min(int((1 - xy[j, 1]) * 5), 4) == y]
    assert g.count[i] == len(members) > 15
    np.testing.assert_allclose(g.directions[i], vectors[members].mean(0), rtol=1e-5)
    np.testing.assert_allclose(g.attributions[i], attr[members].mean(0), rtol=1e-4,
                               atol=1e-6)
    assert set(g.examples[i]) <= set(members)
  # Every cell over the threshold is kept, and only those.
  hist = np.zeros((5, 5), int)
  for j in range(500):
    hist[min(int((1 - xy[j, 1]) * 5), 4), min(int(xy[j, 0] * 5), 4)] += 1
  assert len(g) == (hist > 15).sum()


def test_grid_orientation_top_row_is_high_v():
  xy = np.array([[0.05, 0.95]] * 3 + [[0.95, 0.05]] * 3)
  g = grid_lib.build_grid(xy, np.eye(6), size=2, min_density=0)
  cells = {(int(x), int(y)) for x, y in zip(g.x, g.y)}
  assert cells == {(0, 0), (1, 1)}   # top-left is low u, high v


def test_examples_are_nearest_to_the_mean_one_per_image():
  xy = np.full((4, 2), 0.5)
  vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [1.0, 0.05]])
  g = grid_lib.build_grid(xy, vectors, 1, 0, image_index=np.array([0, 1, 2, 2]))
  mean = vectors.mean(0)
  cos = vectors @ mean / np.linalg.norm(vectors, axis=1)
  assert g.examples[0][0] == int(np.argmax(cos))
  assert len(g.examples[0]) == 3   # image 2 appears once


def test_empty_grid_is_a_clear_error():
  xy = np.random.default_rng(6).random((30, 2))
  with pytest.raises(grid_lib.EmptyGridError, match="Lower --min_density"):
    grid_lib.build_grid(xy, np.ones((30, 3)), size=20, min_density=10)


def test_fit_sample_indices_are_a_seeded_sorted_subset():
  a = layout.fit_sample_indices(1000, 100, seed=5)
  assert len(a) == 100 and len(np.unique(a)) == 100
  assert (np.diff(a) > 0).all() and a[0] >= 0 and a[-1] < 1000
  np.testing.assert_array_equal(a, layout.fit_sample_indices(1000, 100, seed=5))
  assert not np.array_equal(a, layout.fit_sample_indices(1000, 100, seed=6))
  np.testing.assert_array_equal(layout.fit_sample_indices(50, 100, 0), np.arange(50))


def _clusters(n_per=150, k=3, dims=16, seed=7):
  rng = np.random.default_rng(seed)
  centres = rng.random((k, dims)) * 10
  labels = np.repeat(np.arange(k), n_per)
  vectors = centres[labels] + rng.normal(scale=0.3, size=(len(labels), dims))
  order = rng.permutation(len(labels))
  return vectors[order].astype(np.float32), labels[order]


def test_sampled_layout_places_held_out_vectors_with_their_cluster(tmp_path):
  vectors, labels = _clusters()
  p = layout.UmapPreset(15, 0.1, "euclidean")
  with progress.capture() as events:
    xy = layout.umap_layout_sampled(vectors, p, seed=1, fit_sample=150,
                                    n_epochs=100, state_dir=tmp_path, chunk=100)
  assert xy.shape == (450, 2) and np.isfinite(xy).all()
  fit = layout.fit_sample_indices(450, 150, seed=1)
  held = np.setdiff1d(np.arange(450), fit)
  # Each held-out vector's nearest fitted point (in the layout) is from its
  # own cluster: transform put it in the right island.
  d = ((xy[held, None, :] - xy[None, fit, :]) ** 2).sum(-1)
  nearest = fit[np.argmin(d, axis=1)]
  assert np.mean(labels[nearest] == labels[held]) > 0.97
  placed = [e.n for e in events if e.kind == "update"]
  assert placed == [100, 200, 300]   # 300 held out, in chunks of 100

  # Resume: the seeded model is refitted (nothing is unpickled: issue 22)
  # and finished chunks are reused; only the missing chunk is recomputed,
  # and the result is identical.
  assert sorted(p.suffix for p in tmp_path.iterdir()) == [".npy"] * 3
  (tmp_path / "chunk_00001.npy").unlink()
  with progress.capture() as events:
    again = layout.umap_layout_sampled(vectors, p, seed=1, fit_sample=150,
                                       n_epochs=100, state_dir=tmp_path,
                                       chunk=100)
  assert any("fitting UMAP" in e.message for e in events)
  # Only the missing chunk is placed; the saved ones count as done.
  assert [e.n for e in events if e.kind == "update"] == [300]
  np.testing.assert_array_equal(xy, again)
