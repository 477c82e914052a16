"""Builds the data of an offline Microscope: renders, examples, connections.

:func:`build` runs four resumable stages in one work directory::

  manifest.json                    model + settings; a rerun with other settings
                                   refuses to mix results
  renders/<layer>/<start>.npz      feature visualizations of channels
                                   [start, start + chunk), uint8, one batched
                                   render per chunk (each file saved atomically)
  diversity/<layer>/<start>.npz    optional: K diverse renders per channel
  examples/<layer>.npz             top dataset examples per channel
  weights/<A>__<B>.npy             expanded weights between adjacent unit layers

A rerun skips every file that exists, so an interrupted job loses at most the
chunk in flight. The *site layers* are the rendered layers plus their unit-layer
neighbours (:func:`atlasjax.circuits.previous_layer` / ``next_layer``): the
neighbours get dataset examples and connections but no renders, so every
strongest-input/output link lands on a page. The dataset examples of all site
layers come from one streaming pass over the images.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax import circuits
from atlasjax import images as images_lib
from atlasjax import workdir as workdir_lib
from atlasjax.atlas import icon_objective
from atlasjax.classic import examples as examples_lib
from atlasjax.models import base
from atlasjax.optvis import objectives
from atlasjax.optvis import registry
from atlasjax.optvis import render as render_lib

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# Settings that may change between runs of one work directory: which layers
# are rendered (each layer's files stand alone) and how many links the site
# lists (recomputed from the saved weights on every run).
_RERUN_FREE = ("layers", "links")


# Lower bounds of the integer settings, checked before anything is written.
_MIN_INTS = {"size": 1, "steps": 1, "chunk_size": 1, "diversity": 0,
             "examples": 1, "batch_size": 1, "links": 1, "tile": 1}


# The built-in unit objective (MicroscopeConfig.objective).
CHANNEL = "channel"


class MicroscopeError(ValueError):
  """A work directory or setting that cannot be used (message names the fix)."""


@dataclasses.dataclass(frozen=True)
class MicroscopeConfig:
  """Everything that determines a Microscope's contents.

  Attributes:
    layers: unit layers whose every channel is rendered.
    size: render side in pixels.
    steps: optimisation steps per render.
    chunk_size: channels per render call (and per saved chunk file).
    transforms: the renderer's transforms preset (a built-in name, a name
      registered in :mod:`atlasjax.optvis.registry` or
      ``"package.module:factory"``).
    param: the image parameterization (the same kinds of names).
    objective: ``"channel"`` (each channel's mean activation), or a
      registered objective name / ``"package.module:factory"`` whose
      ``factory(layer)`` returns a family ``channel index -> Objective``
      (the index is a traced int32 scalar).
    diversity: diverse renders per channel (0: none).
    diversity_weight: weight of the diversity term.
    examples: dataset examples kept per channel.
    batch_size: images per forward pass when collecting examples.
    links: strongest inputs (and outputs) listed per sign.
    tile: side in px of the dataset-example crops on the site.
    seed: base PRNG seed of the renders (item key: ``fold_in(seed, channel)``).
  """

  layers: tuple[str, ...] = ("mixed3a",)
  size: int = 64
  steps: int = 64
  chunk_size: int = 64
  transforms: str = "standard"
  param: str = "fft"
  objective: str = CHANNEL
  diversity: int = 0
  diversity_weight: float = 1e2
  examples: int = 6
  batch_size: int = 16
  links: int = 6
  tile: int = 64
  seed: int = 0


def site_layers(model: base.Model, layers: Sequence[str]) -> tuple[str, ...]:
  """The rendered layers plus their neighbouring unit layers, network order."""
  units = set(circuits.unit_layers(model))
  out = set()
  for layer in layers:
    if layer not in units:
      raise MicroscopeError(
          f"{layer!r} is not a unit layer of {model.name!r}; choose from "
          + ", ".join(circuits.unit_layers(model)))
    out.add(layer)
    for near in (circuits.previous_layer(model, layer),
                 circuits.next_layer(model, layer)):
      if near is not None:
        out.add(near)
  return tuple(sorted(out, key=model.index))


def layer_pairs(model: base.Model, layers: Sequence[str]) -> tuple[tuple[str, str], ...]:
  """Adjacent ``(A, B)`` unit-layer pairs touching a rendered layer."""
  pairs = set()
  for layer in layers:
    prev, nxt = (circuits.previous_layer(model, layer),
                 circuits.next_layer(model, layer))
    if prev is not None:
      pairs.add((prev, layer))
    if nxt is not None:
      pairs.add((layer, nxt))
  return tuple(sorted(pairs, key=lambda p: model.index(p[0])))


# ----------------------------------------------------------------------------
# Files.

def atomic_save_npz(path: pathlib.Path, **arrays) -> None:
  """Writes ``path`` so that it either exists complete or not at all."""
  path.parent.mkdir(parents=True, exist_ok=True)
  workdir_lib.save_npz(path, **arrays)


def _atomic_save_npy(path: pathlib.Path, array: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  workdir_lib.save_npy(path, array)


def _fingerprint(paths: Sequence[str]) -> str:
  """The photos' names and contents (an edited photo is a different set)."""
  return workdir_lib.files_fingerprint("", paths)


def _manifest(model: base.Model, params, config: MicroscopeConfig,
              paths: Sequence[str]) -> dict:
  settings = {k: v for k, v in dataclasses.asdict(config).items()
              if k not in _RERUN_FREE}
  if config.objective != CHANNEL:   # keyed by the factory's structure too
    settings["objective"] = [config.objective, icon_objective.digest(
        registry.lookup("objective", config.objective))[0]]
  return {"version": MANIFEST_VERSION, "model": model.name,
          "weights": workdir_lib.params_fingerprint(params),
          "settings": settings, "images": len(paths),
          "images_fingerprint": _fingerprint(paths)}


_IDENTITY = ("model", "weights", "images_fingerprint")


def check_manifest(workdir: pathlib.Path, manifest: dict) -> dict:
  """Checks that an existing manifest matches ``manifest``; writes nothing.

  Returns the existing one, or ``manifest`` for a new work directory.
  """
  path = workdir / MANIFEST
  settings = manifest["settings"]
  if path.is_file():
    old = workdir_lib.read_json(path)
    flat_old = {**old.get("settings", {}), **{k: old.get(k) for k in _IDENTITY}}
    flat_new = {**settings, **{k: manifest[k] for k in _IDENTITY}}
    # A manifest from before a setting existed had that setting's default.
    defaults = dataclasses.asdict(MicroscopeConfig())
    flat_old = {k: flat_old.get(k, defaults.get(k)) for k in flat_new}
    diff = [k for k in flat_new if flat_old[k] != flat_new[k]]
    if diff:
      k = diff[0]
      raise MicroscopeError(
          f"{workdir} was built with {k}={flat_old[k]!r}, not "
          f"{flat_new[k]!r}; use a new --workdir or the same settings.")
    return old
  return manifest


def chunk_path(workdir: pathlib.Path, kind: str, layer: str, start: int) -> pathlib.Path:
  """Path of the saved chunk of ``layer`` starting at channel ``start``."""
  return workdir / kind / layer / f"{start:05d}.npz"


# ----------------------------------------------------------------------------
# Stage 1: renders.

@functools.lru_cache(maxsize=None)
def channel_family(layer: str):
  """``c -> channel(layer, c)``, one stable function per layer (one compile)."""
  return lambda c: objectives.channel(layer, c)


@functools.lru_cache(maxsize=None)
def diverse_family(layer: str, weight: float):
  return lambda c: (objectives.channel(layer, c)
                    + weight * objectives.diversity(layer))


def unit_family(config: MicroscopeConfig, layer: str, diverse: bool = False):
  """``channel -> Objective`` of a layer's renders (``config.objective``)."""
  if config.objective == CHANNEL:
    return (diverse_family(layer, config.diversity_weight) if diverse
            else channel_family(layer))
  make = registry.lookup("objective", config.objective)(layer)
  if not callable(make):
    raise MicroscopeError(
        f"--objective={config.objective}: its factory returned "
        f"{type(make).__name__}, not a family (channel -> Objective).")
  if not diverse:
    return make
  weight = config.diversity_weight
  return lambda c: make(c) + weight * objectives.diversity(layer)


def check_renders(model, config: MicroscopeConfig, params=None) -> None:
  """The pieces and the unit objective of every rendered layer, checked on
  the model before anything is written (nothing compiled)."""
  for kind in ("param", "transforms", "objective"):
    value = getattr(config, kind)
    if kind == "objective" and value == CHANNEL:
      continue
    try:
      registry.check(kind, value)
    except registry.RegistryError as e:
      raise MicroscopeError(f"--{kind}={value}: {e}") from None
  if config.objective == CHANNEL:
    return
  for layer in config.layers:
    try:
      icon_objective.check_family(model, unit_family(config, layer),
                                  np.zeros((1,), np.int32), render_config(config),
                                  params)
    except MicroscopeError:
      raise
    except (ValueError, KeyError, TypeError) as e:
      raise MicroscopeError(f"--objective={config.objective} on {layer}: "
                            f"{e}") from None


def render_config(config: MicroscopeConfig, diverse: bool = False):
  """The renderer's config for a layer's renders (``diverse``: the diversity renders)."""
  return render_lib.RenderConfig(
      size=config.size, steps=config.steps, chunk_size=config.chunk_size,
      transforms=config.transforms, param=config.param,
      images_per_item=config.diversity if diverse else 1)


def render_layer(model, params, layer: str, config: MicroscopeConfig,
                 workdir: pathlib.Path, diverse: bool = False,
                 log: Callable[[str], None] = print) -> dict:
  """Renders every channel of ``layer`` in chunks, skipping saved ones.

  Returns ``{"chunks": n, "rendered": [starts], "seconds": t}``.
  """
  depth = model.layer(layer).depth
  kind = "diversity" if diverse else "renders"
  make = unit_family(config, layer, diverse)
  rc = render_config(config, diverse)
  key = jax.random.PRNGKey(config.seed + (1 if diverse else 0))
  starts = range(0, depth, config.chunk_size)
  done, t0 = [], time.perf_counter()
  for start in starts:
    path = chunk_path(workdir, kind, layer, start)
    if path.is_file():
      continue
    channels = np.arange(start, min(start + config.chunk_size, depth), dtype=np.int32)
    t = time.perf_counter()
    result = render_lib.render(model, params, make, args=channels, config=rc,
                               key=key, item_ids=channels)
    images = np.asarray(jax.device_get(result.images))[..., :3]
    atomic_save_npz(path, channels=channels,
                    images=np.round(images * 255).astype(np.uint8),
                    values=np.asarray(result.values, np.float32))
    done.append(start)
    log(f"{kind} {layer} {start}-{channels[-1]}: {len(channels)} units in "
        f"{time.perf_counter() - t:.1f}s")
  return {"chunks": len(starts), "rendered": done,
          "seconds": time.perf_counter() - t0}


def load_renders(workdir: pathlib.Path, layer: str, kind: str = "renders"):
  """``{channel: uint8 image(s)}`` from the saved chunks of ``layer``."""
  out = {}
  folder = workdir / kind / layer
  for path in sorted(folder.glob("*.npz")) if folder.is_dir() else ():
    with np.load(path, allow_pickle=False) as z:
      for c, image in zip(z["channels"], z["images"]):
        out[int(c)] = image
  return out


# ----------------------------------------------------------------------------
# Stage 2: dataset examples, all site layers in one pass.

def example_loader(model: base.Model) -> Callable[[str], np.ndarray]:
  """Dataset images at the model's input size (256 → 224 scaled), so crop
  boxes from layer strides and receptive fields line up for every model,
  fixed-size ones (which would resample any other size) included."""
  return functools.partial(images_lib.load_for_model, input_size=model.input_size)


@functools.partial(jax.jit, static_argnames=("model", "layers"))
def _max_positions(model, params, images, layers):
  acts = model.apply(params, images, layers=layers)
  out = {}
  for layer in layers:
    a = acts[layer]
    b, h, w, c = a.shape
    flat = a.reshape(b, h * w, c)
    arg = jnp.argmax(flat, axis=1)
    out[layer] = (flat.max(axis=1), jnp.stack([arg // w, arg % w], axis=-1))
  return out


def collect_examples(model, params, layers: Sequence[str], paths: Sequence[str],
                     config: MicroscopeConfig, workdir: pathlib.Path,
                     log: Callable[[str], None] = print) -> list[str]:
  """Top ``config.examples`` images per channel of every layer lacking a file.

  One forward pass per batch serves all those layers. Returns the layers
  collected now.
  """
  todo = tuple(l for l in layers if not (workdir / "examples" / f"{l}.npz").is_file())
  if not todo:
    return []
  if not paths:
    raise MicroscopeError("No images to collect dataset examples from; pass "
                          "--images=DIR with photos.")
  t0 = time.perf_counter()
  tops = {l: examples_lib.empty_topk(model.layer(l).depth, config.examples)
          for l in todo}
  report = images_lib.ReadReport()
  for batch in images_lib.iter_batches(list(paths), config.batch_size,
                                       load=example_loader(model), report=report):
    n = len(batch.indices)
    padded = np.zeros((config.batch_size,) + batch.images.shape[1:], np.float32)
    padded[:n] = batch.images      # one compilation for every batch
    found = jax.device_get(_max_positions(model, params, jnp.asarray(padded), todo))
    for layer, (scores, positions) in found.items():
      # positions is [B, C, 2]: merge_topk wants [B, D, 2].
      tops[layer] = examples_lib.merge_topk(tops[layer], scores[:n],
                                            batch.indices, positions[:n])
  if report.read == 0:
    raise MicroscopeError("No readable images: " + report.summary())
  for layer, top in tops.items():
    atomic_save_npz(workdir / "examples" / f"{layer}.npz", scores=top.scores,
                    images=top.images, positions=top.positions,
                    stride=np.int64(model.layer(layer).stride))
  log(f"examples for {', '.join(todo)} from {report.read} images in "
      f"{time.perf_counter() - t0:.1f}s ({report.skipped} unreadable)")
  return list(todo)


# ----------------------------------------------------------------------------
# Stage 3: expanded weights.

def compute_weights(model, params, pairs, workdir: pathlib.Path,
                    log: Callable[[str], None] = print) -> dict:
  """Expanded weights of every adjacent pair, saved once and reused; ``{(a, b): path}``."""
  out = {}
  for a, b in pairs:
    path = workdir / "weights" / f"{a}__{b}.npy"
    if not path.is_file():
      t = time.perf_counter()
      try:
        weights = circuits.expanded_weights(model, params, a, b)
      except circuits.NoKernelError as e:  # through attention: pages list no links
        log(f"no expanded weights {a} -> {b}: {e}")
        continue
      _atomic_save_npy(path, weights)
      log(f"expanded weights {a} -> {b} in {time.perf_counter() - t:.1f}s")
    out[(a, b)] = workdir_lib.load_npy(path)
  return out


def receptive_fields(model, params, layers, config: MicroscopeConfig,
                     workdir: pathlib.Path) -> dict[str, int]:
  """Example-crop side per layer: its effective receptive field (cached)."""
  path = workdir / "examples" / "crops.json"
  crops = workdir_lib.read_json(path) if path.is_file() else {}
  missing = [l for l in layers if l not in crops]
  for layer in missing:
    crops[layer] = examples_lib.receptive_field_size(
        model, params, layer, jax.random.PRNGKey(config.seed))
  if missing:
    path.parent.mkdir(parents=True, exist_ok=True)
    workdir_lib.write_json(path, crops, indent=None)
  return {l: crops[l] for l in layers}


# ----------------------------------------------------------------------------
# The whole job.

def build(model: base.Model, params, config: MicroscopeConfig,
          workdir: os.PathLike | str, image_paths: Sequence[str], *,
          image_root: os.PathLike | str | None = None,
          log: Callable[[str], None] = print) -> dict:
  """Runs (or resumes) every stage and writes the site; returns a summary.

  The summary has ``index`` (the site's page), ``site_layers``, ``pairs``
  and per-layer render stats (which chunks were rendered by this call).
  """
  workdir = pathlib.Path(workdir)
  config = dataclasses.replace(config, layers=tuple(config.layers))
  if not config.layers:
    raise MicroscopeError("No layers to render; pass --layers=mixed3a,...")
  for field, low in _MIN_INTS.items():
    value = getattr(config, field)
    if not isinstance(value, int) or value < low:
      raise MicroscopeError(f"--{field}={value!r}: must be an integer ≥ {low}.")
  layers = site_layers(model, config.layers)
  check_renders(model, config, params)
  pairs = layer_pairs(model, config.layers)
  paths = workdir_lib.utf8_names(image_paths, "microscope")
  manifest = check_manifest(workdir, _manifest(model, params, config, paths))
  with workdir_lib.lock(workdir):
    if not (workdir / MANIFEST).is_file():
      workdir_lib.write_json(workdir / MANIFEST, manifest, indent=2)
    return _build_locked(model, params, config, workdir, paths, layers, pairs,
                         image_root, log)


def _build_locked(model, params, config: MicroscopeConfig, workdir: pathlib.Path,
                  paths: list[str], layers, pairs, image_root, log) -> dict:
  """:func:`build`'s stages, under the work directory's lock."""
  from atlasjax.microscope import site  # pylint: disable=g-import-not-at-top
  stats = {}
  for layer in config.layers:
    stats[layer] = render_layer(model, params, layer, config, workdir, log=log)
    if config.diversity > 1:
      render_layer(model, params, layer, config, workdir, diverse=True, log=log)
  collect_examples(model, params, layers, paths, config, workdir, log=log)
  weights = compute_weights(model, params, pairs, workdir, log=log)
  crops = receptive_fields(model, params, layers, config, workdir)
  index = site.write_site(model, config, workdir, layers, weights, paths,
                          crops=crops, image_root=image_root)
  return {"index": str(index), "site_layers": layers,
          "pairs": [list(p) for p in pairs], "renders": stats}
