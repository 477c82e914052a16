"""Stage 3b of an activation atlas: feature-inverting every cell and assembling.

For each requested grid size, the kept cells' mean activations are inverted
with the atlas objective (``direction_neuron_cossim`` with the whitening matrix
S and a cosine power, or your own family ``direction -> Objective``: see
:mod:`atlasjax.atlas.icon_objective`) — all cells of a grid rendered together
by the batched renderer, chunked to bounded memory, best of ``attempts``.
Rendering resumes chunk by chunk: each finished chunk is saved before the next
one starts, in a folder keyed by every setting that shapes the icons (a custom
objective by its structure), so icons of other settings are never reused.

Outputs in the work directory (paths in ``atlas.json`` are relative to it)::

  atlas.json                       layer, grids, cells (see :func:`run`)
  class_names.json                 short class names in logit order
  grid_<size>/atlas.png            icons at their cells on white
  grid_<size>/directions.npy       float32 [cells, C]: what each icon inverts
  grid_<size>/attributions.npy     float16 [cells, classes]: mean attribution
  grid_<size>/class_scores.npy     float32 [cells, classes]: class support, the
                                   ranking of each cell's top classes and of
                                   the viewer's shading (see grid.py)
  grid_<size>/icons/<x>_<y>.png    one icon per kept cell

Icon fidelity (reported per grid): each icon is fed back through the network;
its activation vector at the centre position must be closer (cosine) to its own
cell's direction (``v·S`` when whitening, as the objective uses) than to any
other cell's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from atlasjax import distributed
from atlasjax import labels as labels_lib
from atlasjax import progress
from atlasjax import workdir as workdir_lib
from atlasjax.atlas import collect as collect_lib
from atlasjax.atlas import grid as grid_lib
from atlasjax.atlas import icon_objective
from atlasjax.atlas import layout as layout_lib
from atlasjax.models import base
from atlasjax.optvis import registry
from atlasjax.optvis import render as render_lib

ATLAS_JSON = "atlas.json"
CLASS_NAMES = "class_names.json"
ATLAS_JSON_VERSION = 1
# Carter et al. (2019) render icons with cos^4 emphasis on the direction.
DEFAULT_COSSIM_POW = 4.0
# The icon objective's form (see objectives.direction_neuron_cossim).
DEFAULT_OBJECTIVE_FORM = icon_objective.DEFAULT_FORM
# Icons per compiled batch when AtlasConfig.chunk_size is None.
DEFAULT_ICON_CHUNK = 64
# Icon side as a fraction of the cell when density scaling shrinks sparse cells.
MIN_DENSITY_SCALE = 0.3


@dataclasses.dataclass(frozen=True)
class AtlasConfig:
  """How to grid the layout and render the icons."""
  layer: str = "mixed4c"
  # The measured CPU-sized default job (8 min on 2 idle cores, icon
  # fidelity 0.946 / 0.841 against the 0.84 / 0.82 it must keep;
  # bench/RESULTS.md). The paper's settings are the "paper"
  # preset of experiments/configs/atlas.py; scripts' flags come from these.
  grid_sizes: tuple[int, ...] = (10, 20)
  min_density: tuple[int, ...] = (6, 10)   # one value, or one per grid size
  icon_size: int = 80
  steps: int = 384
  attempts: int = 1
  lr: float = render_lib.DEFAULT_LR
  cossim_pow: float = DEFAULT_COSSIM_POW
  # ``direction_neuron_cossim`` form: "cosine" (a true cosine, invariant to
  # the scale of the direction and the whitening) or "lucid_notebook" (the
  # published notebook's, for reproductions); or your own: a family
  # ``direction [C] -> Objective``, a registered name or
  # "package.module:factory" (atlasjax.atlas.icon_objective says exactly
  # what each receives).
  objective: str | icon_objective.Family = DEFAULT_OBJECTIVE_FORM
  # How each cell's top classes (and the viewer's shading) are ranked:
  # "support" or "mean_attribution" (the paper's; needs hundreds of vectors
  # per cell). See atlasjax/atlas/grid.py.
  class_ranking: str = grid_lib.DEFAULT_CLASS_RANKING
  whiten: bool = True
  # Icon transforms (optvis.transform.PRESETS) and parameterization
  # (optvis.param.KINDS: "fft", Lucid's, or "maco"), or names registered in
  # atlasjax.optvis.registry, or "package.module:factory".
  transforms: str = "atlas"
  param: str = "fft"
  seed: int = 0
  chunk_size: int | None = None
  density_scaled: bool = False
  n_examples: int = 8

  def density_for(self, i: int) -> int:
    """Minimum density of grid ``i`` (one value for all grids, or one per grid)."""
    if len(self.min_density) == 1:
      return self.min_density[0]
    if len(self.min_density) != len(self.grid_sizes):
      raise ValueError("--min_density needs one value or one per grid size; got "
                       f"{len(self.min_density)} for {len(self.grid_sizes)} grids.")
    return self.min_density[i]

  def render_config(self) -> render_lib.RenderConfig:
    """The :class:`~atlasjax.optvis.render.RenderConfig` of the icons."""
    return render_lib.RenderConfig(
        size=self.icon_size, steps=self.steps, lr=self.lr, attempts=self.attempts,
        chunk_size=self.chunk_size, param=self.param, decorrelate=True,
        transforms=self.transforms)

  def described(self) -> "AtlasConfig":
    """This config with the objective as a JSON-able record
    (:func:`icon_objective.describe`): what run records, ``atlas.json``
    and the icons' cache key hold."""
    return dataclasses.replace(
        self, objective=icon_objective.describe(self.objective))


def config_json(config: AtlasConfig) -> dict:
  """``config`` as plain JSON values (a custom objective described)."""
  return json.loads(json.dumps(dataclasses.asdict(config.described())))


make_atlas_objective = icon_objective.make_atlas_objective


def render_icons(model: base.Model, params, layer: str, directions: np.ndarray,
                 whitening: np.ndarray | None, config: AtlasConfig, key: jax.Array,
                 chunk_dir: pathlib.Path | None = None) -> np.ndarray:
  """Renders one icon per direction (``[N, size, size, 3]`` uint8).

  With ``chunk_dir``, finished chunks are saved there and reused on rerun.
  Item ``i`` uses key ``fold_in(key, i)``, so chunking does not change icons.
  An icon whose objective or image is not finite is an error naming it
  (:func:`checked_icons`), on one process as on many, before its chunk is
  saved.
  """
  n = len(directions)
  # Equal chunks (131 icons → 3 × 44, not 64 + 64 + 3 padded to 64): one
  # compiled program and no rendering wasted on padding.
  n_chunks = -(-n // (config.chunk_size or DEFAULT_ICON_CHUNK))
  chunk = max(1, -(-n // n_chunks))
  make = icon_objective.icon_family(config.objective, layer, whitening,
                                   config.cossim_pow)
  # The renderer pads a short final chunk to ``chunk``: one compilation.
  render_config = dataclasses.replace(config.render_config(), chunk_size=chunk)
  spans = [(lo, min(n, lo + chunk)) for lo in range(0, n, chunk)]
  paths = [chunk_dir / f"chunk_{c:04d}_{lo}_{hi}.npy" if chunk_dir else None
           for c, (lo, hi) in enumerate(spans)]
  if jax.process_count() > 1:
    return _render_icons_global(model, params, make, directions, render_config,
                                key, spans, paths, layer)
  # Chunks saved by an earlier run count as done, so the ETA covers the rest.
  cached = sum(hi - lo for (lo, hi), p in zip(spans, paths)
               if p is not None and p.exists())
  out = []
  with progress.bar(n, f"icons {layer}", unit="icon", initial=cached) as bar:
    for (lo, hi), path in zip(spans, paths):
      if path is not None and path.exists():
        out.append(workdir_lib.load_npy(path))
        continue
      result = render_lib.render(
          model, params, make, args=jnp.asarray(directions[lo:hi]),
          config=render_config, key=key, item_ids=np.arange(lo, hi),
          check_finite=False)   # Checked below, as the multi-process path does.
      icons = checked_icons(result.images, result.values, lo, layer)
      if path is not None:
        workdir_lib.save_npy(path, icons)
      out.append(icons)
      bar.update(hi - lo)
  return np.concatenate(out)


def checked_icons(images, values, first: int, layer: str) -> np.ndarray:
  """Rendered icons ``[M, H, W, 3]`` in [0, 1] as uint8, if all are finite.

  ``values [M]`` are their objectives; the icons are the items from
  ``first`` on. The one finiteness check of both icon paths (one process
  or many): an icon whose objective or any pixel is NaN or infinite raises
  :class:`~atlasjax.optvis.render.RenderError` naming it, so it is never
  saved or assembled as a (black) image.
  """
  bad = render_lib.nonfinite_items(
      render_lib.RenderResult(images, values, None, None))
  if len(bad):
    names = ", ".join(str(first + int(i)) for i in bad[:10])
    raise render_lib.RenderError(
        f"icons {layer}: non-finite objective or image for icon {names}"
        f"{' …' if len(bad) > 10 else ''} ({len(bad)} of {len(values)} in its "
        "chunk); check that icon's direction (its row of the grid's "
        "directions.npy) or lower --lr.")
  return _to_uint8(images)


def _to_uint8(images) -> np.ndarray:
  return np.asarray(np.clip(np.asarray(images) * 255.0 + 0.5, 0, 255), np.uint8)


def _global(mesh, spec, local):
  """A global array from every process's ``local`` part (``P()``: the same)."""
  sharding = jax.sharding.NamedSharding(mesh, spec)
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local)


# The batch axis of the one-device mesh (a renderer with several devices
# brings its own).
_ICON_AXIS = "icons"


@dataclasses.dataclass(frozen=True)
class _GlobalJob:
  """What every step of a multi-process icon render shares.

  ``rows`` is a chunk's height after padding, as :func:`render_lib.render`
  pads ``chunk_size`` items on this process's devices.
  """
  renderer: render_lib.Renderer
  mesh: jax.sharding.Mesh
  params: object
  key: jax.Array
  directions: np.ndarray
  spans: list
  rows: int
  count: int
  me: int
  layer: str


def _global_job(model, params, make, directions, render_config, key, spans,
                layer) -> _GlobalJob:
  """Builds the renderer over every device of every process, and the mesh."""
  lay = distributed.layout()
  devices = tuple(sorted(jax.devices(), key=lambda d: (d.process_index, d.id)))
  renderer = render_lib.build(model, make, render_config, devices=devices,
                              pieces=render_lib.custom_pieces(render_config))
  mesh = renderer.mesh or jax.sharding.Mesh(np.asarray(devices), (_ICON_AXIS,))
  local = lay.local_devices
  rows = local * -(-render_config.chunk_size // local)
  replicated = jax.sharding.PartitionSpec()
  return _GlobalJob(renderer, mesh, _global(mesh, replicated, params),
                    _global(mesh, replicated, key),
                    np.asarray(directions, np.float32), spans, rows,
                    lay.process_count, lay.process_index, layer)


def _render_group(job: _GlobalJob, g: int) -> dict[int, np.ndarray]:
  """Renders chunk group ``g`` (one chunk per process) as one sharded program.

  Returns every chunk of the group as checked uint8 icons: each process
  checks all of them (:func:`checked_icons`), so a non-finite icon stops
  every process at the same step instead of leaving the others waiting at
  the next collective.
  """
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  n_chunks = len(job.spans)
  c = g * job.count + job.me
  lo, hi = job.spans[c] if c < n_chunks else job.spans[-1]
  index = lo + np.minimum(np.arange(job.rows), hi - lo - 1)
  batch = jax.sharding.PartitionSpec(job.mesh.axis_names[0])
  out = job.renderer.fn(job.params, job.key,
                        _global(job.mesh, batch, index.astype(np.int32)),
                        _global(job.mesh, batch, job.directions[index]),
                        _global(job.mesh, jax.sharding.PartitionSpec(), np.int32(g)))
  images, values = (np.asarray(x) for x in multihost_utils.process_allgather(
      (out[0], out[1]), tiled=True))
  icons = {}
  for q in range(job.count):
    cq = g * job.count + q
    if cq < n_chunks:
      qlo, qhi = job.spans[cq]
      rows = slice(q * job.rows, q * job.rows + qhi - qlo)
      icons[cq] = checked_icons(images[rows], values[rows], qlo, job.layer)
  return icons


def _render_icons_global(model, params, make, directions, render_config, key,
                         spans, paths, layer) -> np.ndarray:
  """:func:`render_icons` over the global device mesh of a multi-process job.

  Icon chunk ``c`` belongs to process ``c mod P``. Each step renders chunks
  ``g·P … g·P+P−1`` together, one per process, as one program sharded over
  every device of every process; each process feeds and saves only its own
  chunk (padded as a single-process run pads it), so every device runs the
  same per-device batch shape as in a single-process run with as many local
  devices, and the icons are bit-identical to it on CPU. Every process gets
  all icons back (an all-gather of a step's outputs, or the saved chunks),
  checked for finiteness as on one process.
  """
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  job = _global_job(model, params, make, directions, render_config, key, spans,
                    layer)
  n, n_chunks = len(directions), len(spans)
  # Process 0 decides what is left, so that every process runs the same steps
  # even if a shared file system shows them different listings.
  done = np.array([p is not None and p.exists() for p in paths], np.int32)
  done = np.asarray(multihost_utils.broadcast_one_to_all(done)).astype(bool)
  groups = [g for g in range(-(-n_chunks // job.count))
            if not done[g * job.count:(g + 1) * job.count].all()]
  icons: dict[int, np.ndarray] = {}
  cached = int(sum(hi - lo for (lo, hi), d in zip(spans, done) if d))
  with progress.bar(n, f"icons {layer}", unit="icon", initial=cached) as bar:
    for g in groups:
      icons.update(_render_group(job, g))
      c = g * job.count + job.me
      if c < n_chunks and paths[c] is not None and not done[c]:
        workdir_lib.save_npy(paths[c], icons[c])   # The chunk it owns.
      bar.update(sum(spans[cq][1] - spans[cq][0] for cq in range(
          g * job.count, min((g + 1) * job.count, n_chunks))))
  for c in range(n_chunks):
    if c not in icons:
      icons[c] = workdir_lib.load_npy(paths[c])
  return np.concatenate([icons[c] for c in range(n_chunks)])


def icon_fidelity(model: base.Model, params, layer: str, icons: np.ndarray,
                  directions: np.ndarray, whitening: np.ndarray | None,
                  batch_size: int = 64) -> dict:
  """Retrieval rate and mean cosine of icons against their own directions."""
  targets = directions if whitening is None else directions @ whitening
  targets = targets / (np.linalg.norm(targets, axis=1, keepdims=True) + 1e-12)
  forward = jax.jit(lambda p, x: model.apply(p, x, layers=(layer,))[layer])
  vecs = []
  for lo in range(0, len(icons), batch_size):
    a = np.asarray(forward(params, jnp.asarray(icons[lo:lo + batch_size],
                                               jnp.float32) / 255.0))
    vecs.append(a[:, a.shape[1] // 2, a.shape[2] // 2])
  v = np.concatenate(vecs).astype(np.float64)
  v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
  cos = v @ targets.T
  own = np.diag(cos)
  return {"retrieval": float((cos.argmax(axis=1) == np.arange(len(v))).mean()),
          "mean_cosine": float(own.mean()), "cells": int(len(v))}


def assemble(icons: np.ndarray, grid: grid_lib.Grid, icon_size: int,
             density_scaled: bool = False) -> Image.Image:
  """Places each icon at its cell on a white canvas (row 0 at the top)."""
  side = grid.size * icon_size
  canvas = Image.new("RGB", (side, side), (255, 255, 255))
  max_count = max(int(grid.count.max()), 1)
  for icon, x, y, count in zip(icons, grid.x, grid.y, grid.count):
    image = Image.fromarray(icon)
    size = icon_size
    if density_scaled:
      scale = max(MIN_DENSITY_SCALE, float(np.sqrt(count / max_count)))
      size = max(1, int(round(icon_size * scale)))
      image = image.resize((size, size), Image.LANCZOS)
    offset = (icon_size - size) // 2
    canvas.paste(image, (int(x) * icon_size + offset, int(y) * icon_size + offset))
  return canvas


def _grid_key(config: AtlasConfig, size: int, density: int, fingerprint: str,
              directions: np.ndarray, weights: str) -> str:
  """Names a grid's chunk cache; the directions make a changed layout or
  sample subset (class atlases) render afresh instead of reusing stale icons,
  and ``weights`` (the params' fingerprint) other weights."""
  settings = config_json(config)
  settings.pop("class_ranking")   # Labels only: the icons do not depend on it.
  settings["objective"] = icon_objective.structural(settings["objective"])
  text = json.dumps([settings, size, density, fingerprint, weights],
                    sort_keys=True, default=str)
  digest = hashlib.sha256(text.encode())
  digest.update(np.ascontiguousarray(directions, np.float32).tobytes())
  return digest.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class _Inputs:
  """What every grid of one atlas is built from (read once, validated)."""
  collection: collect_lib.Collection
  layer: str
  layout_name: str
  xy: np.ndarray
  outliers: np.ndarray | None
  vectors: np.ndarray
  extra: dict
  whitening: np.ndarray | None
  fingerprint: str
  weights: str


class AtlasError(ValueError):
  """An atlas setting that cannot run; the message names the flag and the fix."""


def _check_numbers(config: AtlasConfig) -> None:
  """Integer and real settings within their bounds."""
  for field in ("icon_size", "steps", "attempts", "n_examples"):
    if not isinstance(getattr(config, field), int) or getattr(config, field) < 1:
      raise AtlasError(f"--{field}={getattr(config, field)!r}: must be an "
                       "integer ≥ 1.")
  if not config.grid_sizes or min(config.grid_sizes) < 1 or (
      config.chunk_size is not None and config.chunk_size < 1):
    raise AtlasError(f"--grid_sizes={list(config.grid_sizes)} and --chunk_size="
                     f"{config.chunk_size} must be positive integers.")
  for i in range(len(config.grid_sizes)):
    config.density_for(i)
  if not (np.isfinite(config.lr) and config.lr > 0):
    raise AtlasError(f"--lr={config.lr!r}: must be a finite number > 0.")
  if not (np.isfinite(config.cossim_pow) and config.cossim_pow >= 0):
    raise AtlasError(f"--cossim_pow={config.cossim_pow!r}: must be a finite "
                     "number ≥ 0.")


def _check_names(config: AtlasConfig) -> None:
  """Named choices: asked of the modules that own them, so the lists stay there."""
  if config.class_ranking not in grid_lib.CLASS_RANKINGS:
    raise AtlasError(f"--class_ranking={config.class_ranking}: use one of "
                     f"{', '.join(grid_lib.CLASS_RANKINGS)}.")
  for kind in ("param", "transforms"):
    try:
      registry.check(kind, getattr(config, kind))
    except registry.RegistryError as e:
      raise AtlasError(f"--{kind}={getattr(config, kind)}: {e}") from None


def _check_objective(config: AtlasConfig, model: base.Model, params) -> None:
  """The icon objective, built and checked on the model (nothing compiled).

  A layer the model lacks is left to the stages that read it (a collection
  of another model is named as such by :func:`plan`).
  """
  if config.layer not in model.layer_names:
    return
  try:
    icon_objective.check(config.objective, model, config.layer, config.whiten,
                         config.cossim_pow, config.render_config(), params)
  except ValueError as e:
    raise AtlasError(
        f"--objective={icon_objective.label(config.objective)}: "
        f"{str(e).rstrip('.')}.") from None


def check_config(config: AtlasConfig, model: base.Model, params=None) -> None:
  """Refuses settings the icons cannot be rendered with; reads nothing.

  Needs no work directory, so a pipeline checks it before its first stage
  writes anything: bounds of the numbers, the named choices (custom ones
  imported), that the model sees icons of ``icon_size`` after the
  transforms, and the icon objective (with ``params``, a custom family
  traced on the icons' abstract activations:
  :func:`atlasjax.optvis.render.check`).
  """
  _check_numbers(config)
  _check_names(config)
  render_config = config.render_config()
  render_lib.check_input_size(model, render_config, render_config.image_param(),
                              render_config.transform())
  _check_objective(config, model, params)


@dataclasses.dataclass(frozen=True)
class AtlasPlan:
  """A validated atlas run: the collection and the layer it renders.

  Attributes:
    collection: the work directory's finished collection.
    layer: the collected layer the icons invert.
    layout_name: the folder of the layout the cells come from.
  """
  collection: collect_lib.Collection
  layer: str
  layout_name: str


def plan(config: AtlasConfig, model: base.Model, workdir: os.PathLike | str,
         layout_name: str = layout_lib.LAYOUT_DIR, params=None) -> AtlasPlan:
  """Validates the settings, the collection and the layout; writes nothing.

  Scripts call it before they record the run's settings, so a refused run
  leaves the work directory as it found it; :func:`run` calls it again.
  ``params``: as :func:`check_config`.
  """
  check_config(config, model, params)
  workdir = pathlib.Path(workdir)
  collection = collect_lib.Collection.open(workdir)
  layer = collection.check_layer(config.layer)
  if collection.settings["model"] != model.name:
    raise collect_lib.CollectError(
        f"{workdir} was collected with model {collection.settings['model']!r}, "
        f"not {model.name!r}; use a work directory of this model.")
  if not (workdir / layout_name / "coords.npy").exists():
    raise collect_lib.CollectError(
        f"No layout in {workdir / layout_name}: run experiments/layout.py first.")
  return AtlasPlan(collection, layer, layout_name)


def _load_inputs(config: AtlasConfig, params, workdir: pathlib.Path,
                 collection: collect_lib.Collection, layer: str,
                 layout_name: str, main: bool) -> _Inputs:
  """The layout, the vectors, their attributions and the whitening matrix."""
  layout_dir = workdir / layout_name
  load = lambda name: (workdir_lib.load_npy(layout_dir / name)
                       if (layout_dir / name).exists() else None)
  # Layout outliers (beyond the normalisation margin) belong to no cell.
  xy, outliers, subset = load("coords.npy"), load(layout_lib.OUTLIERS), load(
      "indices.npy")
  vectors = collection.vectors_memmap(layer)
  # Attributions and the crops' top-5 predictions (stored when the model has
  # logits) rank each cell's classes.
  keys = ["image_index"]
  if collection.settings["attributions"]:
    keys.append(f"attributions/{layer}")
    if "top_classes" in next(collection.iter_shards()):
      keys += ["top_classes", "top_logits"]
  extra = collection.load(keys)
  if subset is not None:
    vectors = np.asarray(vectors)[subset]
    extra = {k: v[subset] for k, v in extra.items()}
  whitening = None
  if config.whiten:
    whitening = load("whitening.npy")
    if whitening is None:
      whitening = layout_lib.whitening_matrix(vectors)
      if main:
        workdir_lib.save_npy(layout_dir / "whitening.npy", whitening)
  return _Inputs(collection, layer, layout_name, xy, outliers, vectors, extra,
                 whitening, layout_lib.collection_fingerprint(collection),
                 workdir_lib.params_fingerprint(params))


def _cell_entries(grid: grid_lib.Grid, gdir_name: str, inputs: _Inputs,
                  labels: labels_lib.Labels | None) -> list[dict]:
  """``atlas.json``'s cells of one grid: icon, top classes, example photos."""
  cells = []
  # Ranked by support (grid module docstring) when the collection has the
  # crops' predictions, else by mean attribution.
  ranking = (grid.class_scores if grid.class_scores is not None
             else grid.attributions)
  image_index = inputs.extra["image_index"]
  for i in range(len(grid)):
    top = []
    if grid.attributions is not None:
      for index, value in grid_lib.top_classes(ranking[i]):
        name = labels.short_name(index) if labels is not None else str(index)
        top.append({"index": index, "name": name, "score": round(value, 8),
                    "attribution": round(float(grid.attributions[i, index]), 6)})
    examples = []
    for s in grid.examples[i]:
      image_id = inputs.collection.ids[int(image_index[s])]
      if image_id not in examples:
        examples.append(image_id)
    cells.append({"x": int(grid.x[i]), "y": int(grid.y[i]),
                  "count": int(grid.count[i]), "top_classes": top,
                  "examples": examples,
                  "icon": f"{gdir_name}/icons/{grid.x[i]}_{grid.y[i]}.png",
                  "direction": i})
  return cells


def _write_grid(config: AtlasConfig, grid: grid_lib.Grid, icons: np.ndarray,
                workdir: pathlib.Path, gdir_name: str, cells: list[dict]) -> None:
  """The grid's arrays, icons and assembled atlas, each written atomically."""
  gdir = workdir / gdir_name
  workdir_lib.save_npy(gdir / "directions.npy", grid.directions.astype(np.float32))
  if grid.attributions is not None:
    workdir_lib.save_npy(gdir / "attributions.npy",
                         grid.attributions.astype(np.float16))
  if grid.class_scores is not None:
    workdir_lib.save_npy(gdir / "class_scores.npy",
                         grid.class_scores.astype(np.float32))
  for icon, cell in zip(icons, cells):
    workdir_lib.save_image(workdir / cell["icon"], Image.fromarray(icon))
  workdir_lib.save_image(gdir / "atlas.png", assemble(
      icons, grid, config.icon_size, config.density_scaled))


def _grid_entry(config: AtlasConfig, grid: grid_lib.Grid, size: int, density: int,
                gdir_name: str, inputs: _Inputs, fidelity: dict,
                cells: list[dict]) -> dict:
  has = lambda x: x is not None
  return {
      "size": size, "min_density": density, "atlas": f"{gdir_name}/atlas.png",
      "icon_size": config.icon_size, "directions": f"{gdir_name}/directions.npy",
      "attributions": (f"{gdir_name}/attributions.npy"
                       if has(grid.attributions) else None),
      "class_scores": (f"{gdir_name}/class_scores.npy"
                       if has(grid.class_scores) else None),
      "class_ranking": "support" if has(grid.class_scores) else "mean_attribution",
      "whitening": (f"{inputs.layout_name}/whitening.npy"
                    if has(inputs.whitening) else None),
      "fidelity": fidelity, "cells": cells}


def _render_grid(config: AtlasConfig, model: base.Model, params, inputs: _Inputs,
                 gi: int, workdir: pathlib.Path, prefix: str, main: bool,
                 labels: labels_lib.Labels | None) -> dict | None:
  """Grids the layout at one size, renders (or resumes) its icons and, on
  process 0, checks their fidelity and writes the grid's files."""
  size, density = config.grid_sizes[gi], config.density_for(gi)
  extra = inputs.extra
  grid = grid_lib.build_grid(inputs.xy, inputs.vectors, size, density,
                             extra.get(f"attributions/{inputs.layer}"),
                             n_examples=config.n_examples,
                             image_index=extra["image_index"],
                             exclude=inputs.outliers,
                             top_classes=extra.get("top_classes"),
                             top_logits=extra.get("top_logits"))
  if config.class_ranking == "mean_attribution":
    grid.class_scores = None   # Rank and shade by the plain mean.
  gdir_name = f"{prefix}grid_{size}"
  key_text = _grid_key(config, size, density, inputs.fingerprint, grid.directions,
                       inputs.weights)
  chunk_dir = workdir / gdir_name / f"chunks_{key_text}"
  (workdir / gdir_name / "icons").mkdir(parents=True, exist_ok=True)
  chunk_dir.mkdir(exist_ok=True)
  progress.note(f"grid {size}×{size}: {len(grid)} cells over density {density}; "
                f"rendering {config.icon_size}px icons, {config.steps} steps, "
                f"{config.attempts} attempt(s)")
  icons = render_icons(model, params, inputs.layer, grid.directions,
                       inputs.whitening, config,
                       jax.random.fold_in(jax.random.PRNGKey(config.seed), size),
                       chunk_dir)
  if not main:   # Process 0 checks and writes what every process shares.
    return None
  fidelity = icon_fidelity(model, params, inputs.layer, icons, grid.directions,
                           inputs.whitening)
  progress.note(f"grid {size}×{size}: icon fidelity retrieval "
                f"{fidelity['retrieval']:.3f}, mean cosine "
                f"{fidelity['mean_cosine']:.3f}")
  cells = _cell_entries(grid, gdir_name, inputs, labels)
  _write_grid(config, grid, icons, workdir, gdir_name, cells)
  return _grid_entry(config, grid, size, density, gdir_name, inputs, fidelity, cells)


def _atlas_json(config: AtlasConfig, model: base.Model, inputs: _Inputs,
                grids: list[dict], labels: labels_lib.Labels | None) -> dict:
  layout_name = inputs.layout_name
  return {
      "version": ATLAS_JSON_VERSION, "model": model.name, "layer": inputs.layer,
      "class_names": CLASS_NAMES if labels is not None else None,
      "images_root": inputs.collection.settings["images_root"],
      "layout": {"coords": f"{layout_name}/coords.npy",
                 "scatter": f"{layout_name}/scatter.png",
                 "labels": f"{layout_name}/top_class.npy"},
      "orientation": "cell x = column from the left, y = row from the top; layout "
                     "u grows right and v grows up: x = floor(u*size), "
                     "y = floor((1-v)*size)",
      "config": config_json(config),
      "grids": grids,
  }


def run(config: AtlasConfig, model: base.Model, params, workdir: os.PathLike | str,
        labels: labels_lib.Labels | None = None,
        layout_name: str = layout_lib.LAYOUT_DIR, prefix: str = "") -> dict:
  """Grids the layout, renders icons, assembles atlases and writes atlas.json.

  Validate (nothing written on a bad setting), then under the work
  directory's lock: load the inputs, render and write each grid, and write
  ``atlas.json`` last. In a multi-process job every process renders its share
  of the icons (see :func:`_render_icons_global`); process 0 alone holds the
  lock, checks fidelity and writes the shared files, and the others return
  its ``atlas.json``.
  """
  workdir = pathlib.Path(workdir)
  main = distributed.layout().is_main
  checked = plan(config, model, workdir, layout_name, params)
  path = workdir / f"{prefix}{ATLAS_JSON}"
  with workdir_lib.lock(workdir, take=main):
    inputs = _load_inputs(config, params, workdir, checked.collection,
                          checked.layer, layout_name, main)
    grids = [_render_grid(config, model, params, inputs, gi, workdir, prefix, main,
                          labels) for gi in range(len(config.grid_sizes))]
    if not main:
      distributed.barrier(f"atlas-json:{path}")
      return workdir_lib.read_json(path)
    if labels is not None:
      workdir_lib.write_json(workdir / CLASS_NAMES,
                             [labels.short_name(i) for i in range(len(labels))],
                             indent=None)
    atlas = _atlas_json(config, model, inputs, grids, labels)
    workdir_lib.write_json(path, atlas)
    progress.note(f"atlas: wrote {path}")
    distributed.barrier(f"atlas-json:{path}")
  return atlas
