"""Atlas variants built from a finished collection with attributions.

* **Class atlas** — the samples attributed to one class: those whose
  attribution to the class wins (argmax over classes), plus the ``top_k`` with
  the largest positive attribution to it; UMAP 20 / 0.01 / cosine
  (:data:`layout.PRESET_CLASS_ATLAS`), an 8×8 grid, minimum density 4, icons
  rendered exactly as for the global atlas (:func:`render_atlas.run` on a
  layout folder of its own). Outputs under ``<workdir>/class_<index>/``.
* **Two-class comparison** — the samples attributed to either class; the
  horizontal axis is the attribution difference ``right − left`` divided by
  the 99th percentile of its magnitude and clipped to [−1, 1] (so the right
  class is on the right), the vertical axis a 1-D UMAP of the vectors; a 10×10
  grid. Outputs under ``<workdir>/compare_<left>_<right>/``: ``comparison.png``
  (both sides in one labelled image) and ``comparison.json``.
* **Layer comparison** — two layers collected from the same crops, each with
  its own layout and atlas; for every cell of layer A's grid, how its samples
  spread over layer B's grid (entropy, number of B cells holding 80 % of
  them), and the reverse (how many A cells a B cell gathers). Outputs under
  ``<workdir>/compare_layers_<a>_<b>/``. The collection samples each layer at
  its OWN random position in the same crop (positions differ per layer, and a
  mixed5b position sees a larger receptive field than a mixed4c one), so a
  "split" means: crops that look alike at A look different at B at another
  position of the same crop — not the same spatial activation re-embedded.

Icons use the whitening ``S`` of the whole collection at the layer: a class
subset usually has fewer samples than channels, and its own ``AᵀA/N`` would
be singular.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from atlasjax import labels as labels_lib
from atlasjax import progress
from atlasjax import workdir as workdir_lib
from atlasjax.atlas import collect as collect_lib
from atlasjax.atlas import grid as grid_lib
from atlasjax.atlas import layout as layout_lib
from atlasjax.atlas import pipeline
from atlasjax.atlas import render_atlas
from atlasjax.models import base

DEFAULT_TOP_K = 256
CLASS_GRID = 8
CLASS_MIN_DENSITY = 4
COMPARE_GRID = 10
COMPARE_MIN_DENSITY = 3
DIFFERENCE_PERCENTILE = 99.0
COVERAGE = 0.8
# umap_layout refuses fewer points than this.
MIN_LAYOUT_SAMPLES = 4
VARIANT_JSON = "variant.json"
COMPARISON_JSON = "comparison.json"
COMPARISON_PNG = "comparison.png"
SIDE_BY_SIDE_PNG = "side_by_side.png"
# Labelled figures: header height and text colours.
HEADER_PX = 36
LABEL_FONT_PX = 18
TEXT_COLOUR = (20, 20, 20)
RULE_COLOUR = (170, 170, 170)


class NotEnoughSamplesError(grid_lib.EmptyGridError):
  """Too few samples were selected to lay out and grid a variant atlas."""


# ----------------------------------------------------------------------------
# Configurations.

@dataclasses.dataclass(frozen=True)
class ClassAtlasConfig:
  """A class-filtered atlas; ``atlas`` carries the layer, grid and icon settings."""
  atlas: render_atlas.AtlasConfig = render_atlas.AtlasConfig(
      grid_sizes=(CLASS_GRID,), min_density=(CLASS_MIN_DENSITY,))
  top_k: int = DEFAULT_TOP_K
  umap: layout_lib.UmapPreset = layout_lib.PRESET_CLASS_ATLAS
  n_epochs: int | None = None


@dataclasses.dataclass(frozen=True)
class CompareClassesConfig:
  """A two-class comparison atlas (one grid size: ``atlas.grid_sizes[0]``)."""
  atlas: render_atlas.AtlasConfig = render_atlas.AtlasConfig(
      grid_sizes=(COMPARE_GRID,), min_density=(COMPARE_MIN_DENSITY,))
  top_k: int = DEFAULT_TOP_K
  umap: layout_lib.UmapPreset = layout_lib.PRESET_CLASS_ATLAS
  n_epochs: int | None = None
  percentile: float = DIFFERENCE_PERCENTILE


def umap_preset(n_neighbors: int | None = None, min_dist: float | None = None,
                metric: str | None = None) -> layout_lib.UmapPreset:
  """:data:`layout.PRESET_CLASS_ATLAS` with the given values overriding it."""
  preset = layout_lib.PRESET_CLASS_ATLAS
  return layout_lib.UmapPreset(
      n_neighbors if n_neighbors is not None else preset.n_neighbors,
      min_dist if min_dist is not None else preset.min_dist,
      metric or preset.metric)


# ----------------------------------------------------------------------------
# Pure selection and geometry.

def select_class_samples(attributions: np.ndarray, class_index: int,
                         top_k: int) -> np.ndarray:
  """Sorted indices of the samples attributed to ``class_index``.

  The union of the samples whose attribution to the class is the largest
  (argmax over classes, first index on ties) and the ``top_k`` samples with
  the largest attribution to it among those where it is positive.
  """
  attributions = np.asarray(attributions)
  winners = np.flatnonzero(np.argmax(attributions, axis=1) == class_index)
  column = attributions[:, class_index].astype(np.float64)
  positive = np.flatnonzero(column > 0)
  ranked = positive[np.argsort(-column[positive], kind="stable")]
  return np.union1d(winners, ranked[:max(top_k, 0)]).astype(np.int64)


def select_pair_samples(attributions: np.ndarray, left: int, right: int,
                        top_k: int) -> np.ndarray:
  """Samples attributed to either class (see :func:`select_class_samples`)."""
  return np.union1d(select_class_samples(attributions, left, top_k),
                    select_class_samples(attributions, right, top_k))


def difference_axis(attributions: np.ndarray, left: int, right: int,
                    percentile: float = DIFFERENCE_PERCENTILE
                    ) -> tuple[np.ndarray, float]:
  """``(x, scale)``: ``clip((a_right − a_left) / scale, −1, 1)`` per sample.

  ``scale`` is the ``percentile`` of ``|a_right − a_left|`` (1 when that is 0),
  so samples attributed more to the right class get positive ``x``.
  """
  a = np.asarray(attributions, np.float64)
  diff = a[:, right] - a[:, left]
  scale = float(np.percentile(np.abs(diff), percentile)) if len(diff) else 0.0
  scale = scale if scale > 0 else 1.0
  return np.clip(diff / scale, -1.0, 1.0), scale


def comparison_coords(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Layout ``[N, 2]`` in [0, 1]²: ``u = (x + 1) / 2`` and ``v = y``."""
  return np.stack([(np.asarray(x, np.float64) + 1.0) / 2.0,
                   np.asarray(y, np.float64)], axis=1).astype(np.float32)


def cell_ids(xy: np.ndarray, size: int) -> np.ndarray:
  """Flat grid cell (``row * size + col``) of each layout point."""
  col, row = grid_lib.cell_of(xy, size)
  return row * size + col


def spread(source: np.ndarray, target: np.ndarray, size_target: int,
           coverage: float = COVERAGE) -> dict[int, dict]:
  """How each source cell's samples distribute over the target cells.

  ``source`` and ``target`` are flat cell ids per sample. For every source
  cell: its count, the target cells sorted by share, the entropy (bits) of
  that distribution and ``cells_for_coverage``, the fewest target cells that
  together hold at least ``coverage`` of its samples.
  """
  source, target = np.asarray(source), np.asarray(target)
  out = {}
  for cell in np.unique(source):
    ids, counts = np.unique(target[source == cell], return_counts=True)
    order = np.lexsort((ids, -counts))
    ids, counts = ids[order], counts[order]
    share = counts / counts.sum()
    entropy = float(-(share * np.log2(share)).sum())
    needed = int(np.searchsorted(np.cumsum(share), coverage - 1e-9) + 1)
    out[int(cell)] = {
        "count": int(counts.sum()), "entropy_bits": round(abs(entropy), 6),
        "cells_for_coverage": needed,
        "cells": [{"x": int(t % size_target), "y": int(t // size_target),
                   "count": int(c), "share": round(float(s), 6)}
                  for t, c, s in zip(ids, counts, share)]}
  return out


def layer_transfer(xy_a: np.ndarray, xy_b: np.ndarray, size: int,
                   min_density: int = 0, coverage: float = COVERAGE) -> dict:
  """Split (A cell → B cells) and fusion (B cell ← A cells) statistics.

  Only cells with more than ``min_density`` samples (the cells that have
  icons) are reported on either side; distributions count all samples.
  """
  a, b = cell_ids(xy_a, size), cell_ids(xy_b, size)

  def listing(src, dst):
    rows = []
    for cell, stats in spread(src, dst, size, coverage).items():
      if stats["count"] > min_density:
        rows.append({"x": cell % size, "y": cell // size, **stats})
    return rows

  splits, fusions = listing(a, b), listing(b, a)

  def summary(rows):
    if not rows:
      return {"cells": 0}
    weights = np.array([r["count"] for r in rows], np.float64)
    entropy = np.array([r["entropy_bits"] for r in rows])
    needed = np.array([r["cells_for_coverage"] for r in rows])
    return {"cells": len(rows),
            "mean_entropy_bits": round(float(np.average(entropy, weights=weights)), 6),
            "mean_cells_for_coverage": round(float(np.average(needed, weights=weights)), 6),
            "single_cell": int((needed == 1).sum())}

  return {"size": size, "min_density": min_density, "coverage": coverage,
          "splits": splits, "fusions": fusions,
          "summary": {"splits": summary(splits), "fusions": summary(fusions)}}


def required_samples(atlas: render_atlas.AtlasConfig) -> int:
  """The fewest samples with which some grid cell can pass its density."""
  densities = [atlas.density_for(i) for i in range(len(atlas.grid_sizes))]
  return max(MIN_LAYOUT_SAMPLES, max(densities) + 1)


def check_config(config: ClassAtlasConfig | CompareClassesConfig,
                 model: base.Model, params=None) -> None:
  """Refuses a variant's settings before anything is collected or written.

  The icon settings as :func:`render_atlas.check_config`, the UMAP settings
  as :func:`layout.check_config`, and ``top_k ≥ 0``.
  """
  render_atlas.check_config(config.atlas, model, params)
  layout_lib.check_config(_layout_config(config))
  if not isinstance(config.top_k, int) or config.top_k < 0:
    raise render_atlas.AtlasError(f"--top_k={config.top_k!r}: must be an "
                                  "integer ≥ 0.")


def check_collection(config: collect_lib.CollectConfig, model: base.Model,
                     params, images: os.PathLike | str,
                     workdir: os.PathLike | str) -> None:
  """What :func:`ensure_collection` will do is possible; writes nothing.

  A finished collection is used as it is; otherwise the collection it would
  start is validated (:func:`collect.plan`).
  """
  try:
    collect_lib.Collection.open(workdir)
  except collect_lib.CollectError:
    collect_lib.plan(config, model, params, images, workdir)


def _layout_config(config: ClassAtlasConfig | CompareClassesConfig
                   ) -> layout_lib.LayoutConfig:
  """The layout of a variant's selected samples (no whitening: the icons
  use the global atlas' whitening, saved beside it)."""
  return layout_lib.LayoutConfig(
      layer=config.atlas.layer, seed=config.atlas.seed, whiten=False,
      n_neighbors=config.umap.n_neighbors, min_dist=config.umap.min_dist,
      metric=config.umap.metric, n_epochs=config.n_epochs)


def check_enough(indices: np.ndarray, atlas: render_atlas.AtlasConfig,
                 what: str) -> None:
  """Raises :class:`NotEnoughSamplesError` (naming the fixes) when too few samples were selected.
  """
  need = required_samples(atlas)
  if len(indices) < need:
    raise NotEnoughSamplesError(
        f"{what}: only {len(indices)} sample(s) selected, but a "
        f"{'/'.join(f'{s}×{s}' for s in atlas.grid_sizes)} grid with minimum "
        f"density {max(atlas.min_density)} needs at least {need}. Collect more "
        "images showing the class (or more --crops_per_image), raise --top_k, "
        "or lower --min_density.")


# ----------------------------------------------------------------------------
# Helpers on a work directory.

def slug(name: str) -> str:
  """A class name as a folder-name fragment (lower case, ``_`` between words)."""
  return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "class"


def _attributions(collection: collect_lib.Collection, layer: str) -> np.ndarray:
  collection.check_layer(layer)
  if not collection.settings.get("attributions"):
    raise collect_lib.CollectError(
        f"The collection in {collection.folder} has no attributions; class "
        "atlases need them: collect again with --attributions into a new --workdir.")
  key = f"attributions/{layer}"
  return collection.load([key])[key]


def _save_global_whitening(collection: collect_lib.Collection, layer: str,
                           layout_dir: pathlib.Path) -> None:
  workdir_lib.save_npy(layout_dir / "whitening.npy",
          layout_lib.whitening_matrix(collection.vectors_memmap(layer)))


def _class_name(labels: labels_lib.Labels | None, index: int) -> str:
  return labels.short_name(index) if labels is not None else str(index)


def _annotate_atlas(path: pathlib.Path, variant: dict) -> dict:
  atlas = json.loads(path.read_text())
  atlas["variant"] = variant
  workdir_lib.write_json(path, atlas)
  return atlas


def ensure_collection(config: collect_lib.CollectConfig, model: base.Model, params,
                      images: os.PathLike | str, workdir: os.PathLike | str,
                      labels: labels_lib.Labels | None = None
                      ) -> collect_lib.Collection:
  """The work directory's finished collection, collecting it first if needed.

  A complete collection is used as it is (whatever ``config`` says), so a
  variant can be built on any finished atlas work directory.
  """
  try:
    collection = collect_lib.Collection.open(workdir)
    progress.note(f"collect: using {collection.folder} "
                  f"({collection.manifest['samples']} samples, layers "
                  f"{', '.join(collection.layers)})")
    return collection
  except collect_lib.CollectError:
    pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
    collect_lib.run(config, model, params, images, workdir, labels)
    return collect_lib.Collection.open(workdir)


def collect_config_of(collection: collect_lib.Collection
                      ) -> collect_lib.CollectConfig:
  """The :class:`CollectConfig` that reproduces a finished collection."""
  s = collection.settings
  return collect_lib.CollectConfig(
      layers=tuple(s["layers"]), seed=s["seed"],
      crops_per_image=s["crops_per_image"], crop_scale=tuple(s["crop_scale"]),
      crop_aspect=tuple(s["crop_aspect"]), image_size=s["image_size"],
      attributions=s["attributions"], shard_images=s["shard_images"])


def _header(image: Image.Image, left: str, right: str, centre: str = ""
            ) -> Image.Image:
  """``image`` under a white band with ``left``/``centre``/``right`` captions."""
  out = Image.new("RGB", (image.width, image.height + HEADER_PX), (255, 255, 255))
  out.paste(image, (0, HEADER_PX))
  draw = ImageDraw.Draw(out)
  font = ImageFont.load_default(size=LABEL_FONT_PX)
  pad = (HEADER_PX - LABEL_FONT_PX) // 2
  draw.text((pad, pad), left, fill=TEXT_COLOUR, font=font)
  width = draw.textlength(right, font=font)
  draw.text((image.width - pad - width, pad), right, fill=TEXT_COLOUR, font=font)
  free = image.width - 4 * pad - width - draw.textlength(left, font=font)
  if centre and draw.textlength(centre, font=font) <= free:
    width = draw.textlength(centre, font=font)
    draw.text(((image.width - width) / 2, pad), centre, fill=RULE_COLOUR, font=font)
  return out


# ----------------------------------------------------------------------------
# Class atlas.

def class_folder(class_index: int) -> str:
  """Folder of a class atlas inside the work directory."""
  return f"class_{class_index}"


def class_atlas(config: ClassAtlasConfig, model: base.Model, params,
                workdir: os.PathLike | str, class_index: int,
                labels: labels_lib.Labels | None = None) -> pathlib.Path:
  """Builds the atlas of the samples attributed to one class; returns its json.

  Writes ``class_<index>/layout/`` (``coords.npy``, ``indices.npy`` into the
  collection, whitening, scatter), ``class_<index>/grid_<size>/`` (atlas.png,
  icons) and ``class_<index>/atlas.json`` (with a ``variant`` entry describing
  the selection). Raises :class:`NotEnoughSamplesError` before any UMAP or
  rendering when the class has too few samples for the grid.
  """
  check_config(config, model, params)
  workdir = pathlib.Path(workdir)
  layer = config.atlas.layer
  collection = collect_lib.Collection.open(workdir)
  attributions = _attributions(collection, layer)
  name = _class_name(labels, class_index)
  if not 0 <= class_index < attributions.shape[1]:
    raise labels_lib.UnknownClassError(
        f"Class index {class_index} outside 0..{attributions.shape[1] - 1}.")
  indices = select_class_samples(attributions, class_index, config.top_k)
  winners = int((np.argmax(attributions, axis=1) == class_index).sum())
  check_enough(indices, config.atlas,
               f"class {name!r} ({class_index}, {winners} argmax winner(s), "
               f"top_k={config.top_k} among positive attributions)")
  folder = class_folder(class_index)
  layout_name = f"{folder}/{layout_lib.LAYOUT_DIR}"
  progress.note(f"class atlas: {name!r} ({class_index}): {len(indices)} samples "
                f"({winners} argmax winners)")
  layout_lib.run(_layout_config(config), workdir, out_name=layout_name,
                 indices=indices)
  if config.atlas.whiten:
    _save_global_whitening(collection, layer, workdir / layout_name)
  render_atlas.run(config.atlas, model, params, workdir, labels,
                   layout_name=layout_name, prefix=f"{folder}/")
  path = workdir / folder / render_atlas.ATLAS_JSON
  _annotate_atlas(path, {
      "kind": "class", "class_index": class_index, "class_name": name,
      "samples": int(len(indices)), "argmax_winners": winners,
      "top_k": config.top_k, "umap": dataclasses.asdict(config.umap),
      "indices": f"{layout_name}/indices.npy"})
  return path


# ----------------------------------------------------------------------------
# Two-class comparison.

def compare_folder(left: str, right: str) -> str:
  """Folder of a two-class comparison inside the work directory."""
  return f"compare_{slug(left)}_{slug(right)}"


def _comparison_layout(config: CompareClassesConfig, collection, layer: str,
                       indices: np.ndarray, x: np.ndarray, out: pathlib.Path,
                       top: np.ndarray) -> np.ndarray:
  """``coords.npy`` = (difference, 1-D UMAP), reused when the inputs match."""
  out.mkdir(parents=True, exist_ok=True)
  settings = {"umap": dataclasses.asdict(config.umap), "seed": config.atlas.seed,
              "n_epochs": config.n_epochs, "layer": layer,
              "collection": layout_lib.collection_fingerprint(collection),
              "subset": hashlib.sha256(indices.tobytes()).hexdigest()[:16],
              "x": hashlib.sha256(np.asarray(x, np.float64).tobytes()).hexdigest()[:16]}
  info_path = out / "layout.json"
  if (info_path.exists() and (out / "coords.npy").exists()
      and json.loads(info_path.read_text()).get("settings") == settings):
    progress.note(f"layout: reusing {out}")
    return np.load(out / "coords.npy")
  vectors = np.asarray(collection.vectors_memmap(layer))[indices]
  start = time.perf_counter()
  progress.note(f"layout: 1-D UMAP of {len(vectors)} vectors")
  y = layout_lib.normalize_layout(layout_lib.umap_layout(
      vectors, config.umap, config.atlas.seed, config.n_epochs, n_components=1))
  xy = comparison_coords(x, y[:, 0])
  workdir_lib.save_npy(out / "coords.npy", xy)
  workdir_lib.save_npy(out / "indices.npy", indices)
  workdir_lib.save_npy(out / "top_class.npy", top)
  layout_lib.scatter_plot(xy, top, out / "scatter.png",
                          title="x: attribution difference, y: 1-D UMAP")
  workdir_lib.write_json(info_path, {
      "settings": settings, "n": int(len(xy)),
      "seconds": round(time.perf_counter() - start, 2)})
  return xy


def _comparison_cells(grid: dict, flat: np.ndarray, diff: np.ndarray,
                      x: np.ndarray) -> list[dict]:
  """Each cell of the comparison grid with its members' mean difference."""
  cells = []
  size = grid["size"]
  for cell in grid["cells"]:
    members = flat == cell["y"] * size + cell["x"]
    cells.append({
        "x": cell["x"], "y": cell["y"], "count": cell["count"],
        "mean_difference": round(float(diff[members].mean()), 6),
        "mean_x": round(float(x[members].mean()), 6),
        "top_classes": cell["top_classes"], "icon": cell["icon"],
        "examples": cell["examples"]})
  return cells


def _comparison_png(atlas_png: pathlib.Path, out: pathlib.Path, names) -> None:
  """The atlas with a centre rule and a left/right header, written atomically."""
  with Image.open(atlas_png) as image:
    canvas = image.convert("RGB")
  draw = ImageDraw.Draw(canvas)
  draw.line([(canvas.width // 2, 0), (canvas.width // 2, canvas.height)],
            fill=RULE_COLOUR, width=1)
  workdir_lib.save_image(out, _header(
      canvas, f"< {names[0]}", f"{names[1]} >", "attribution difference"))


def compare_classes(config: CompareClassesConfig, model: base.Model, params,
                    workdir: os.PathLike | str, left: int, right: int,
                    labels: labels_lib.Labels | None = None) -> dict:
  """Builds the left-vs-right comparison atlas; returns ``comparison.json``."""
  if left == right:
    raise ValueError(f"Compare two different classes (both are {left}).")
  if len(config.atlas.grid_sizes) != 1:
    raise ValueError("A comparison atlas has one grid size, got "
                     f"{config.atlas.grid_sizes}.")
  check_config(config, model, params)
  workdir = pathlib.Path(workdir)
  layer = config.atlas.layer
  collection = collect_lib.Collection.open(workdir)
  attributions = _attributions(collection, layer)
  names = _class_name(labels, left), _class_name(labels, right)
  indices = select_pair_samples(attributions, left, right, config.top_k)
  check_enough(indices, config.atlas, f"{names[0]!r} vs {names[1]!r}")
  subset = np.asarray(attributions[indices], np.float64)
  x, scale = difference_axis(subset, left, right, config.percentile)
  folder = compare_folder(*names)
  layout_name = f"{folder}/{layout_lib.LAYOUT_DIR}"
  top = collection.load(["top_classes"])["top_classes"][indices, 0].astype(np.int32)
  progress.note(f"compare: {names[0]!r} vs {names[1]!r}: {len(indices)} samples, "
                f"difference scale {scale:.4g}")
  xy = _comparison_layout(config, collection, layer, indices, x,
                          workdir / layout_name, top)
  if config.atlas.whiten:
    _save_global_whitening(collection, layer, workdir / layout_name)
  atlas = render_atlas.run(config.atlas, model, params, workdir, labels,
                           layout_name=layout_name, prefix=f"{folder}/")
  (grid,) = atlas["grids"]
  size = grid["size"]
  cells = _comparison_cells(grid, cell_ids(xy, size),
                            subset[:, right] - subset[:, left], x)
  png = f"{folder}/{COMPARISON_PNG}"
  _comparison_png(workdir / grid["atlas"], workdir / png, names)
  result = {
      "version": 1, "layer": layer,
      "left": {"index": left, "name": names[0]},
      "right": {"index": right, "name": names[1]},
      "samples": int(len(indices)), "top_k": config.top_k,
      "x": f"clip((attribution[right] - attribution[left]) / {scale:.6g}, -1, 1) "
           f"where {scale:.6g} is the {config.percentile:g}th percentile of |difference|; "
           "cell column = floor((x + 1) / 2 * size)",
      "scale": scale, "y": "1-D UMAP of the activation vectors",
      "size": size, "min_density": grid["min_density"], "png": png,
      "atlas": grid["atlas"], "atlas_json": f"{folder}/{render_atlas.ATLAS_JSON}",
      "fidelity": grid["fidelity"], "cells": cells}
  workdir_lib.write_json(workdir / folder / COMPARISON_JSON, result)
  _annotate_atlas(workdir / folder / render_atlas.ATLAS_JSON,
                  {"kind": "compare_classes", "left": result["left"],
                   "right": result["right"], "comparison": COMPARISON_JSON})
  progress.note(f"compare: wrote {workdir / png}")
  return result


# ----------------------------------------------------------------------------
# Layer comparison.

def compare_layers_folder(layer_a: str, layer_b: str) -> str:
  """Folder of a layer comparison inside the work directory."""
  return f"compare_layers_{layer_a}_{layer_b}"


def compare_layers(workdir: os.PathLike | str, layer_a: str, layer_b: str,
                   size: int, min_density: int, coverage: float = COVERAGE
                   ) -> dict:
  """Split/fusion statistics and a side-by-side PNG of two layers' atlases.

  Needs the atlases of both layers at grid ``size`` (built by
  :func:`pipeline.run` on a collection of both layers).
  """
  workdir = pathlib.Path(workdir)
  collection = collect_lib.Collection.open(workdir)
  for layer in (layer_a, layer_b):
    if layer not in collection.layers:
      raise collect_lib.CollectError(
          f"The collection in {collection.folder} has layers "
          f"{', '.join(collection.layers)}; comparing {layer_a} with {layer_b} "
          "needs both sampled from the same crops: use a new --workdir with "
          f"--layers={layer_a},{layer_b}.")
  if layer_a == layer_b:
    raise ValueError(f"Compare two different layers (both are {layer_a}).")
  main = collection.layers[0]
  xy, atlases = {}, {}
  for layer in (layer_a, layer_b):
    layout_name, prefix = pipeline.layer_paths(layer, main=layer == main)
    xy[layer] = np.load(workdir / layout_name / "coords.npy")
    atlases[layer] = workdir / f"{prefix}grid_{size}" / "atlas.png"
    if not atlases[layer].exists():
      raise collect_lib.CollectError(
          f"No {size}×{size} atlas of {layer} in {workdir}; build it with "
          f"--grid_sizes including {size}.")
  stats = layer_transfer(xy[layer_a], xy[layer_b], size, min_density, coverage)
  folder = compare_layers_folder(layer_a, layer_b)
  (workdir / folder).mkdir(parents=True, exist_ok=True)
  png = f"{folder}/{SIDE_BY_SIDE_PNG}"
  panels = [_header(Image.open(atlases[layer]).convert("RGB"), layer, "")
            for layer in (layer_a, layer_b)]
  gap = panels[0].width // (2 * size)
  side = Image.new("RGB", (sum(p.width for p in panels) + gap,
                           max(p.height for p in panels)), (255, 255, 255))
  side.paste(panels[0], (0, 0))
  side.paste(panels[1], (panels[0].width + gap, 0))
  workdir_lib.save_image(workdir / png, side)
  result = {
      "version": 1, "layers": [layer_a, layer_b], "png": png,
      "atlases": [str(atlases[l].relative_to(workdir)) for l in (layer_a, layer_b)],
      "samples": int(len(xy[layer_a])),
      "note": "Each layer was sampled at its own random position of the same "
              "crop: a split means crops alike at the first layer differ at the "
              "second (at another position of the crop), not that one "
              "activation moved.",
      **stats}
  workdir_lib.write_json(workdir / folder / COMPARISON_JSON, result)
  summary = stats["summary"]["splits"]
  mean = summary.get("mean_cells_for_coverage", float("nan"))
  progress.note(f"compare layers: {summary.get('cells', 0)} {layer_a} cells "
                f"spread over {mean:.2f} {layer_b} cells on average (80 %); "
                f"wrote {workdir / png}")
  return result
