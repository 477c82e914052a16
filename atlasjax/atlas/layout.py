"""Stage 2 of an activation atlas: a 2-D layout of the activation vectors.

Optional whitening (``S = (AᵀA / N)⁻¹`` on the raw activations, which the
paper's icon objective uses for mixed4a–5b), optional PCA pre-reduction, then
UMAP (umap-learn) with the paper's presets per layer, seeded. The layout is
normalised as in Lucid's activation-atlas notebook (``normalize_layout``): each
axis' 1st–99th percentile range widened by a 10 % margin on both sides, points
clipped to it and the result rescaled to [0, 1]. Points that had to be clipped
lie beyond the margin; they are the layout's outliers, saved in
``outliers.npy`` and left out of the grid cells (:mod:`atlasjax.atlas.grid`),
so that the edge cells average their own neighbourhood rather than a grab-bag
of far-flung points piled onto the border.

Scale: a seeded UMAP's optimisation runs on one core and grows faster than
N (``bench/RESULTS.md``, two cores: 2 min for 10⁵ × 512; 38 min and 17.7 GB
for 10⁶). ``LayoutConfig.fit_sample = M`` fits UMAP on a seeded random subsample
of M vectors and places every other vector with the fitted model's
``transform`` (umap-learn's out-of-sample embedding: neighbours in the fitted
set, then a short optimisation with the fitted points held fixed), in chunks
that are saved as they finish, so an interrupted layout resumes where it
stopped. It keeps coarse neighbourhoods (what atlas cells average) but not
fine ones; the trade is measured by ``bench/layout_quality.py``.

Orientation convention (shared by the grid, the atlas PNG and the viewer):
layout ``u`` grows to the right and ``v`` grows upwards, as in the scatter plot;
grid cell ``(x, y)`` counts columns from the left and rows from the top, so
``x = floor(u · size)`` and ``y = floor((1 − v) · size)``.

Outputs in ``<workdir>/layout/``: ``coords.npy`` (float32 ``[N, 2]``),
``outliers.npy`` (bool ``[N]``), ``top_class.npy``, ``scatter.png`` and
``layout.json`` (settings, timing, outlier count, and the collection
fingerprint it was computed from).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time

import numpy as np

from atlasjax import progress
from atlasjax import workdir as workdir_lib
from atlasjax.atlas import collect as collect_lib
from atlasjax.models import base

LAYOUT_DIR = "layout"
OUTLIERS = "outliers.npy"
CLIP_PERCENTILES = (1.0, 99.0)
# Lucid's notebook widens the percentile range by this fraction of it on each
# side before clipping, so points just past the percentiles keep their place.
LAYOUT_MARGIN = 0.1
# Added to the diagonal (relative to its mean) so that channels which never
# fire in the sample do not make AᵀA/N singular.
WHITENING_RIDGE = 1e-4
# Vectors placed per UMAP ``transform`` call on the ``fit_sample`` path: bounds
# the memory of the out-of-sample graph and is the unit of progress and resume.
TRANSFORM_CHUNK = 50_000
PARTIAL_DIR = "partial"
LAYOUT_JSON = "layout.json"


@dataclasses.dataclass(frozen=True)
class UmapPreset:
  n_neighbors: int
  min_dist: float
  metric: str


# Carter et al. (2019), "Technical notes": per-layer UMAP settings.
PRESET_MIXED4_5 = UmapPreset(50, 0.05, "cosine")
PRESET_MIXED3 = UmapPreset(200, 0.05, "euclidean")
PRESET_CLASS_ATLAS = UmapPreset(20, 0.01, "cosine")


def preset_for(model: base.Model, layer: str) -> UmapPreset:
  """The paper's UMAP settings for ``layer`` of ``model``.

  Early, fine-stride layers (``model.is_early``: GoogLeNet's mixed3a/b,
  EfficientNet-Lite0's stride-8 blocks) get the mixed3 preset, deeper ones
  the mixed4/5 preset: the paper chose them by depth, not by name.
  """
  return PRESET_MIXED3 if model.is_early(layer) else PRESET_MIXED4_5


@dataclasses.dataclass(frozen=True)
class LayoutConfig:
  layer: str = "mixed4c"
  seed: int = 0
  whiten: bool = True
  pca_dims: int | None = None
  n_neighbors: int | None = None   # None: the layer's preset
  min_dist: float | None = None
  metric: str | None = None
  n_epochs: int | None = None      # None: umap-learn's default
  # Fit UMAP on this many vectors (seeded subsample) and ``transform`` the
  # rest; None fits on all of them.
  fit_sample: int | None = None
  # Normalisation: percentile range widened by this margin (Lucid: 0.1).
  margin: float = LAYOUT_MARGIN

  def umap_params(self, model: base.Model | None = None) -> UmapPreset:
    """UMAP settings: the explicit fields, else the layer's preset.

    Without ``model`` (whose metadata says whether the layer is early) the
    deep-layer preset fills in the unset fields.
    """
    preset = preset_for(model, self.layer) if model else PRESET_MIXED4_5
    return UmapPreset(
        self.n_neighbors if self.n_neighbors is not None else preset.n_neighbors,
        self.min_dist if self.min_dist is not None else preset.min_dist,
        self.metric or preset.metric)


def whitening_matrix(vectors: np.ndarray, ridge: float = WHITENING_RIDGE
                     ) -> np.ndarray:
  """``S = (AᵀA / N + ridge · mean(diag) · I)⁻¹`` (uncentred, as in the paper)."""
  a = np.asarray(vectors, np.float64)
  gram = a.T @ a / len(a)
  gram += ridge * max(np.mean(np.diag(gram)), 1e-12) * np.eye(len(gram))
  return np.linalg.inv(gram).astype(np.float32)


def pca_reduce(vectors: np.ndarray, dims: int) -> np.ndarray:
  """Projects centred vectors onto their top ``dims`` principal axes."""
  a = np.asarray(vectors, np.float64)
  a = a - a.mean(axis=0)
  _, _, vt = np.linalg.svd(a.T @ a, hermitian=True)
  axes = vt[:dims]
  # Fix each axis' sign so the result does not depend on the LAPACK build.
  signs = np.sign(axes[np.arange(dims), np.argmax(np.abs(axes), axis=1)])
  return (a @ (axes * signs[:, None]).T).astype(np.float32)


def layout_bounds(xy: np.ndarray, percentiles=CLIP_PERCENTILES,
                  margin: float = LAYOUT_MARGIN) -> tuple[np.ndarray, np.ndarray]:
  """Per-axis ``(lo, hi)``: the percentile range widened by ``margin`` of it.

  Lucid's notebook updates ``mins`` before computing ``maxs``' margin, which
  makes the upper margin 11 % instead of 10 %; both sides get ``margin`` here.
  """
  lo, hi = np.percentile(np.asarray(xy, np.float64), percentiles, axis=0)
  span = hi - lo
  return lo - margin * span, hi + margin * span


def layout_outliers(xy: np.ndarray, percentiles=CLIP_PERCENTILES,
                    margin: float = LAYOUT_MARGIN) -> np.ndarray:
  """Bool ``[N]``: points beyond the margined percentile range on either axis
  (the ones :func:`normalize_layout` clips)."""
  xy = np.asarray(xy, np.float64)
  lo, hi = layout_bounds(xy, percentiles, margin)
  return np.any((xy < lo) | (xy > hi), axis=1)


def normalize_layout(xy: np.ndarray, percentiles=CLIP_PERCENTILES,
                     margin: float = LAYOUT_MARGIN) -> np.ndarray:
  """Lucid's ``normalize_layout``: clip each axis to its percentile range
  widened by ``margin``, then rescale what remains to exactly [0, 1]."""
  lo, hi = layout_bounds(xy, percentiles, margin)
  clipped = np.clip(np.asarray(xy, np.float64), lo, hi)
  clipped -= clipped.min(axis=0)
  top = clipped.max(axis=0)
  return (clipped / np.where(top > 0, top, 1.0)).astype(np.float32)


def _reducer(n: int, params: UmapPreset, seed: int, n_epochs: int | None,
             verbose: bool, n_components: int):
  import umap  # Imported lazily: numba compilation is slow to start.
  if n < 4:
    raise ValueError(f"UMAP needs at least 4 vectors, got {n}.")
  return umap.UMAP(
      n_neighbors=min(params.n_neighbors, n - 1), min_dist=params.min_dist,
      metric=params.metric, n_components=n_components, random_state=seed,
      n_epochs=n_epochs, verbose=verbose, n_jobs=1)  # Seeded UMAP is serial.


def umap_layout(vectors: np.ndarray, params: UmapPreset, seed: int,
                n_epochs: int | None = None, verbose: bool = False,
                n_components: int = 2) -> np.ndarray:
  """Seeded UMAP embedding ``[N, n_components]`` (1 for a 1-D ordering)."""
  reducer = _reducer(len(vectors), params, seed, n_epochs, verbose, n_components)
  return reducer.fit_transform(np.asarray(vectors, np.float32))


def fit_sample_indices(n: int, sample: int, seed: int) -> np.ndarray:
  """The sorted, seeded subsample of ``range(n)`` that UMAP is fitted on."""
  if sample >= n:
    return np.arange(n)
  rng = np.random.default_rng([seed, n, sample])
  return np.sort(rng.choice(n, size=sample, replace=False))


def umap_layout_sampled(vectors: np.ndarray, params: UmapPreset, seed: int,
                        fit_sample: int, n_epochs: int | None = None,
                        state_dir: os.PathLike | str | None = None,
                        chunk: int = TRANSFORM_CHUNK) -> np.ndarray:
  """UMAP fitted on a seeded subsample; the other vectors via ``transform``.

  Returns raw (unnormalised) coordinates ``[N, 2]`` in the input order. With
  ``state_dir`` the fitted model and each finished chunk are kept there, so a
  rerun after an interruption redoes only the unfinished chunks; the caller
  removes the folder once the layout is saved.
  """
  n = len(vectors)
  fit_idx = fit_sample_indices(n, fit_sample, seed)
  rest = np.setdiff1d(np.arange(n), fit_idx, assume_unique=True)
  state = pathlib.Path(state_dir) if state_dir is not None else None
  if state is not None:
    state.mkdir(parents=True, exist_ok=True)
  # The fit is refitted on resume rather than stored: a seeded, serial UMAP
  # gives the same model again, and nothing in a work directory is unpickled.
  t0 = time.perf_counter()
  progress.note(f"layout: fitting UMAP on a seeded subsample of "
                f"{len(fit_idx)} of {n} vectors")
  reducer = _reducer(len(fit_idx), params, seed, n_epochs, False, 2)
  reducer.fit(np.asarray(vectors[fit_idx], np.float32))
  progress.note(f"layout: fitted in {time.perf_counter() - t0:.0f} s")
  xy = np.empty((n, 2), np.float32)
  xy[fit_idx] = reducer.embedding_
  # Equal chunks: umap-learn's transform optimises a batch of ≤ 10⁴ vectors
  # for 100 epochs and a larger one for 30, so a short last chunk would be
  # placed differently from the rest.
  parts = np.array_split(rest, -(-len(rest) // chunk)) if len(rest) else []
  paths = [state / f"chunk_{i:05d}.npy" if state is not None else None
           for i in range(len(parts))]
  # Chunks saved by an earlier run count as done, so the ETA covers the rest.
  cached = sum(len(idx) for idx, path in zip(parts, paths)
               if path is not None and path.exists())
  bar = progress.start(len(rest), "layout transform", unit="vector",
                       initial=cached)
  for idx, path in zip(parts, paths):
    if path is not None and path.exists():
      xy[idx] = workdir_lib.load_npy(path)
      continue
    part = reducer.transform(np.asarray(vectors[idx], np.float32))
    xy[idx] = part
    if path is not None:
      workdir_lib.save_npy(path, part.astype(np.float32))
    bar.update(len(idx))
  bar.close()
  return xy


def _registered(name: str) -> base.Model | None:
  from atlasjax import models  # Registry import only where it is needed.
  return models.get(name) if name in models.available() else None


def collection_fingerprint(collection: collect_lib.Collection) -> str:
  """Short hash of a collection's settings and sample count: what a layout was fitted on."""
  text = json.dumps([collection.manifest["settings"],
                     collection.manifest.get("samples")], sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


class LayoutError(ValueError):
  """A layout setting that cannot run; the message names the flag and the fix."""


# UMAP's own lower bounds: a neighbourhood needs two points, and the spectral
# initialisation of the fit needs at least four vectors.
MIN_NEIGHBORS = 2
MIN_FIT_VECTORS = 4


def check_config(config: LayoutConfig) -> None:
  """Refuses settings UMAP or the normalisation cannot use; reads nothing.

  Needs no work directory, so a pipeline checks it before its first stage
  writes anything.
  """
  bounds = {"pca_dims": 1, "n_neighbors": MIN_NEIGHBORS, "n_epochs": 1,
            "fit_sample": MIN_FIT_VECTORS}
  for field, low in bounds.items():
    value = getattr(config, field)
    if value is not None and (not isinstance(value, int) or value < low):
      raise LayoutError(f"--{field}={value!r}: must be an integer ≥ {low} "
                        "(or unset).")
  for field in ("min_dist", "margin"):
    value = getattr(config, field)
    if value is not None and not value >= 0:   # ``not >=`` also refuses NaN.
      raise LayoutError(f"--{field}={value!r}: must be ≥ 0.")


@dataclasses.dataclass(frozen=True)
class LayoutPlan:
  """One validated layout computation: where it goes and what it must match.

  Attributes:
    config: the layout's settings.
    collection: the collection it lays out.
    out: the output folder.
    settings: what a recorded ``layout.json`` must match to be reused.
    indices: the subset of samples laid out, or None for all.
    params: the UMAP settings after the layer's preset filled the gaps.
  """
  config: LayoutConfig
  collection: collect_lib.Collection
  out: pathlib.Path
  settings: dict
  indices: np.ndarray | None
  params: UmapPreset


def plan(config: LayoutConfig, workdir: os.PathLike | str,
         out_name: str = LAYOUT_DIR, indices: np.ndarray | None = None,
         model: base.Model | None = None) -> LayoutPlan:
  """Validates the settings and the collection; writes nothing.

  Scripts call it before they record the run's settings, so a refused run
  leaves the work directory as it found it; :func:`run` calls it again.
  Arguments as :func:`run`.
  """
  check_config(config)
  workdir = pathlib.Path(workdir)
  collection = collect_lib.Collection.open(workdir)
  collection.check_layer(config.layer)
  settings = {"config": dataclasses.asdict(config),
              "collection": collection_fingerprint(collection),
              "subset": None if indices is None else hashlib.sha256(
                  np.asarray(indices, np.int64).tobytes()).hexdigest()[:16]}
  params = config.umap_params(model or _registered(collection.settings["model"]))
  return LayoutPlan(config, collection, workdir / out_name, settings, indices,
                    params)


def _current(job: LayoutPlan) -> dict | None:
  """The recorded layout when it was made with these settings, else None."""
  info_path = job.out / LAYOUT_JSON
  if not info_path.exists() or not (job.out / "coords.npy").exists():
    return None
  info = workdir_lib.read_json(info_path)
  return info if info.get("settings") == job.settings else None


def _embed(job: LayoutPlan, features: np.ndarray) -> np.ndarray:
  """Raw UMAP coordinates; the ``fit_sample`` path resumes from ``partial/``."""
  config, partial = job.config, job.out / PARTIAL_DIR
  if not (config.fit_sample and config.fit_sample < len(features)):
    return umap_layout(features, job.params, config.seed, config.n_epochs)
  # Partial state of other settings is no use to these; start clean.
  stamp = partial / "settings.json"
  if partial.exists() and (not stamp.exists()
                           or workdir_lib.read_json(stamp) != job.settings):
    workdir_lib.remove_tree(partial)   # never through a symlink
  workdir_lib.make_dirs(partial)
  workdir_lib.write_json(stamp, job.settings)
  return umap_layout_sampled(features, job.params, config.seed, config.fit_sample,
                             config.n_epochs, state_dir=partial)


def _save(job: LayoutPlan, raw: np.ndarray, whitening, elapsed: float) -> dict:
  """Writes every output atomically, ``layout.json`` (which vouches for them) last."""
  config, out, collection = job.config, job.out, job.collection
  xy = normalize_layout(raw, margin=config.margin)
  outliers = layout_outliers(raw, margin=config.margin)
  if whitening is not None:
    workdir_lib.save_npy(out / "whitening.npy", whitening)
  workdir_lib.save_npy(out / "coords.npy", xy)
  workdir_lib.save_npy(out / OUTLIERS, outliers)
  if "top_classes" in next(collection.iter_shards()):
    top = collection.load(["top_classes"])["top_classes"][:, 0].astype(np.int32)
  else:  # a model without classes (a SigLIP image tower): one colour
    top = np.zeros(collection.manifest["samples"], np.int32)
  if job.indices is not None:
    top = top[np.asarray(job.indices)]
    workdir_lib.save_npy(out / "indices.npy", np.asarray(job.indices, np.int64))
  workdir_lib.save_npy(out / "top_class.npy", top)
  scatter_plot(xy, top, out / "scatter.png",
               title=f"{collection.settings['model']} {config.layer}: {len(xy)} "
               "activations, coloured by top class")
  info = {"settings": job.settings, "n": int(len(xy)), "seconds": round(elapsed, 2),
          "outliers": int(outliers.sum()),
          "whitening": "whitening.npy" if whitening is not None else None,
          "umap": dataclasses.asdict(job.params)}
  workdir_lib.write_json(out / LAYOUT_JSON, info)
  return info


def run(config: LayoutConfig, workdir: os.PathLike | str,
        out_name: str = LAYOUT_DIR, indices: np.ndarray | None = None,
        model: base.Model | None = None) -> dict:
  """Computes (or reuses) the layout of one collected layer.

  ``indices`` restricts the layout to a subset of the samples (class atlases);
  ``out_name`` is the output folder under ``workdir``. ``model`` picks the
  per-layer UMAP preset (default: the registered model the collection names).
  The old ``layout.json`` is removed before any output is rewritten, so a
  crash never leaves it vouching for new, half-written files.
  """
  workdir = pathlib.Path(workdir)
  job = plan(config, workdir, out_name, indices, model)
  with workdir_lib.lock(workdir):
    info = _current(job)
    if info is not None:
      progress.note(f"layout: reusing {job.out}")
      return info
    workdir_lib.make_dirs(job.out)    # refused if it leads out through a symlink
    (job.out / LAYOUT_JSON).unlink(missing_ok=True)
    vectors = job.collection.vectors_memmap(config.layer)
    if indices is not None:
      vectors = vectors[np.asarray(indices)]
    start = time.perf_counter()
    whitening = whitening_matrix(vectors) if config.whiten else None
    features = vectors
    if config.pca_dims:
      features = pca_reduce(vectors, min(config.pca_dims, vectors.shape[1]))
    p = job.params
    progress.note(f"layout: UMAP of {len(features)} vectors ({features.shape[1]} "
                  f"dims, n_neighbors={p.n_neighbors}, min_dist={p.min_dist}, "
                  f"metric={p.metric}, seed={config.seed})")
    raw = _embed(job, features)
    info = _save(job, raw, whitening, time.perf_counter() - start)
    if not (job.out / PARTIAL_DIR).is_symlink():
      workdir_lib.remove_tree(job.out / PARTIAL_DIR)
  progress.note(f"layout: {info['n']} points in {info['seconds']:.1f} s "
                f"({info['outliers']} outliers beyond the {config.margin:.0%} "
                f"margin, left out of grid cells) → {job.out}")
  return info


def scatter_plot(xy: np.ndarray, classes: np.ndarray, path: os.PathLike,
                 title: str = "", size_px: int = 800) -> None:
  """Scatter of the layout (``v`` upwards), coloured by class index."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig = plt.figure(figsize=(size_px / 100, size_px / 100), dpi=100)
  ax = fig.add_axes([0, 0, 1, 1])
  ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(classes) % 20, cmap="tab20",
             s=float(np.clip(30000 / max(len(xy), 1), 2.0, 40.0)), linewidths=0,
             alpha=0.8)
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_axis_off()
  if title:
    ax.text(0.01, 0.99, title, transform=ax.transAxes, va="top", fontsize=8)
  workdir_lib.write_with(path, lambda f: fig.savefig(f, format="png",
                                                     facecolor="white"))
  plt.close(fig)
