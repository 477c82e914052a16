"""Stage 1 of an activation atlas: sampling activation vectors from photos.

For every image (and each of ``crops_per_image`` crops of it) and every
requested layer we keep the activation vector at ONE random spatial position
away from the border (rows and columns ``1 … H-2``), with the image id, crop box,
position, top-5 logits and, optionally, the per-class attribution of that
vector: the JVP of the logits with respect to the layer, with the tangent equal
to the activation at that position and zero elsewhere — the linearised effect
of that one activation vector on every logit (Carter et al., 2019).

Every random choice is derived from ``(seed, image index, crop index[, layer])``
so the result does not depend on batch sizes, shard sizes or interruptions.

Storage: ``<workdir>/collect/`` holds ``manifest.json`` (settings, dataset
fingerprint, process layout, shard list), ``images.json`` (image ids) and one
``shard_NNNNN.npz`` per shard of ``shard_images`` consecutive images, written
to a temporary name and renamed, so a shard is either complete or absent.
Re-running resumes from the finished shards (after a crash or ``kill -9`` at
any moment), and a run whose settings differ from the manifest's refuses to
mix shards. (Collections written as orbax checkpoints by earlier versions are
still read.)

Many processes (:mod:`atlasjax.distributed`): process ``p`` of ``P`` owns the
contiguous block ``distributed.owned(n_shards)`` of shards and writes only
those; which shards exist never depends on ``P``, so the collected rows are the
same for any process count, a rerun after a process died redoes only that
process's unfinished shards, and a rerun with another ``P`` reuses every
finished shard. After a
barrier, process 0 alone writes the manifest. Images are decoded by the grain
pipeline of :mod:`atlasjax.atlas.loader` (threads or worker processes, same
batches and crops for any number of either).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import pathlib
import shutil
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax import distributed
from atlasjax import images as images_lib
from atlasjax import labels as labels_lib
from atlasjax import progress
from atlasjax import workdir as workdir_lib
from atlasjax.atlas import loader as loader_lib
from atlasjax.models import base

MANIFEST = "manifest.json"
IMAGE_LIST = "images.json"
COLLECT_DIR = "collect"
SHARD_PREFIX = "shard_"
SHARD_SUFFIX = ".npz"
_TMP_SUFFIX = ".tmp.npz"
# 2: shards are .npz files and the manifest records the process layout.
# 3: the dataset fingerprint hashes the photos' contents, not their sizes.
MANIFEST_VERSION = 3
TOP_K = 5
EMPTY_MARK = "empty"
DEFAULT_CROP_SCALE = loader_lib.DEFAULT_CROP_SCALE
DEFAULT_CROP_ASPECT = loader_lib.DEFAULT_CROP_ASPECT
# Per-shard bookkeeping stored beside the samples (not sample rows).
_SHARD_META = ("skipped", "skipped_reasons")
_SETTINGS_THAT_MUST_MATCH = (
    "model", "weights", "layers", "seed", "crops_per_image", "crop_scale",
    "crop_aspect", "image_size", "attributions", "shard_images", "dataset")


class CollectError(RuntimeError):
  """Collection cannot proceed (bad input or conflicting work directory)."""


@dataclasses.dataclass(frozen=True)
class CollectConfig:
  """What to collect. Fields that shape the data are checked on resume."""
  layers: tuple[str, ...] = ("mixed4c",)
  seed: int = 0
  # The measured CPU-sized default job (README, bench/RESULTS.md): 4 random
  # crops of each of the 800 sample photos, 3,200 vectors. The scripts'
  # flags are generated from these fields, so this is the one default.
  crops_per_image: int = 4
  crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE
  crop_aspect: tuple[float, float] = DEFAULT_CROP_ASPECT
  image_size: int = 224
  attributions: bool = True
  batch_size: int = 32       # forward-pass batch (images × crops)
  shard_images: int = 128    # images per shard
  loader_threads: int = 4    # decoding threads per reading process
  loader_workers: int = 0    # grain worker processes (0: decode in threads here)
  recursive: bool = True


# ----------------------------------------------------------------------------
# Fingerprints (content hashes, through the one work-directory module).

def params_fingerprint(params) -> str:
  """Hash of every weight (see :func:`atlasjax.workdir.params_fingerprint`)."""
  return workdir_lib.params_fingerprint(params)


def dataset_fingerprint(root: pathlib.Path, ids: Sequence[str]) -> str:
  """Hash of the image ids and their *contents*: an edited photo of the same
  size, or another photo under the same name, is a different dataset."""
  return workdir_lib.files_fingerprint(root, ids)


# ----------------------------------------------------------------------------
# Deterministic sampling.

_rng = loader_lib.rng
# Crops are decoded by the loader (in worker processes too), so it owns them.
crop_box = loader_lib.crop_box


def sample_positions(seed: int, image_index: int, crop_index: int,
                     layer_index: int, height: int, width: int) -> np.ndarray:
  """One position uniform over rows/columns ``1 … size-2`` (never the border)."""
  if height < 3 or width < 3:
    raise CollectError(
        f"The layer's feature map is {height}×{width}; sampling away from the "
        "border needs at least 3×3. Use a larger --image_size or an earlier layer.")
  rng = _rng(seed, image_index, crop_index, 1 + layer_index)
  return np.array([rng.integers(1, height - 1), rng.integers(1, width - 1)],
                  dtype=np.int32)


# ----------------------------------------------------------------------------
# The jitted per-batch computation.

def make_sample_fn(model: base.Model, layers: tuple[str, ...], attributions: bool):
  """``f(params, images, positions) -> dict`` of per-image samples.

  ``positions`` is ``[L, B, 2]`` (row, col) per layer. Attribution is the JVP
  of the logits w.r.t. ``perturb[layer]`` with the tangent being the activation
  at the sampled position (zeros elsewhere).
  """
  needs_logits = "logits" in model.layer_names

  def f(params, images, positions):
    wanted = tuple(layers) + (("logits",) if needs_logits else ())
    acts = model.apply(params, images, layers=wanted)
    out = {}
    if needs_logits:
      values, indices = jax.lax.top_k(acts["logits"], TOP_K)
      out["top_logits"], out["top_classes"] = values, indices.astype(jnp.int16)
    b = jnp.arange(images.shape[0])
    for i, layer in enumerate(layers):
      a = acts[layer]
      rows, cols = positions[i, :, 0], positions[i, :, 1]
      out[f"vectors/{layer}"] = a[b, rows, cols]
      if attributions:
        mask = jnp.zeros(a.shape[:3], a.dtype).at[b, rows, cols].set(1.0)
        tangent = a * mask[..., None]
        logits_of = lambda eps: model.apply(
            params, images, layers=("logits",), perturb={layer: eps})["logits"]
        _, dlogits = jax.jvp(logits_of, (jnp.zeros_like(a),), (tangent,))
        out[f"attributions/{layer}"] = dlogits.astype(jnp.float16)
    return out

  return jax.jit(f)


# ----------------------------------------------------------------------------
# Work directory bookkeeping.

def shard_name(index: int) -> str:
  """File stem of shard ``index`` (zero-padded, so names sort in order)."""
  return f"{SHARD_PREFIX}{index:05d}"


def _is_legacy(path: pathlib.Path) -> bool:
  """A finished orbax checkpoint (shards of manifest version 1)."""
  return path.is_dir() and (path / "_CHECKPOINT_METADATA").exists()


def _is_finalized(path: pathlib.Path) -> bool:
  if path.name.endswith(_TMP_SUFFIX):
    return False
  return (path.name.endswith(SHARD_SUFFIX) and path.is_file()) or _is_legacy(path)


def _shard_path(folder: pathlib.Path, name: str) -> pathlib.Path:
  """The finished file (or legacy folder) of shard ``name``, or where it goes."""
  legacy = folder / name
  return legacy if _is_legacy(legacy) else folder / (name + SHARD_SUFFIX)


def _clean_partial(folder: pathlib.Path, names) -> None:
  """Removes what a killed save of shards ``names`` left behind.

  Only the caller's own shards: another process may be writing its own.
  """
  for name in names:
    for entry in (folder / (name + _TMP_SUFFIX), folder / name):
      if entry.is_file():
        entry.unlink()
      elif entry.is_dir() and not _is_legacy(entry):
        shutil.rmtree(entry, ignore_errors=True)


def _save_shard(path: pathlib.Path, flat: dict) -> None:
  """Writes ``flat`` to ``path`` (.npz) atomically and durably."""
  workdir_lib.save_npz(path, **flat)


def _load_shard(path: pathlib.Path, keys=None) -> dict:
  """A shard as a flat dict (``keys`` only, read lazily from the .npz)."""
  if _is_legacy(path):
    # Orbax is slow to import and only needed for version-1 collections.
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    flat = _flatten(ocp.PyTreeCheckpointer().restore(path))
  else:
    with np.load(path, allow_pickle=False) as npz:
      wanted = npz.files if keys is None else [k for k in keys if k in npz.files]
      return {k: npz[k] for k in wanted}
  return flat if keys is None else {k: flat[k] for k in keys if k in flat}


def label_index(image_id: str, labels: labels_lib.Labels | None) -> int:
  """Logit index of the WordNet id in ``image_id``'s file or folder names; -1 if none."""
  if labels is None:
    return -1
  for part in reversed(pathlib.PurePath(image_id).parts):
    wnid = labels_lib.wnid_from_filename(part)
    if wnid is not None:
      try:
        return labels.index_of_wnid(wnid)
      except labels_lib.UnknownClassError:
        return -1
  return -1


def _settings(config: CollectConfig, model: base.Model, params, root, ids):
  return {
      "model": model.name,
      "weights": params_fingerprint(params),
      "layers": list(config.layers),
      "seed": config.seed,
      "crops_per_image": config.crops_per_image,
      "crop_scale": list(config.crop_scale),
      "crop_aspect": list(config.crop_aspect),
      "image_size": config.image_size,
      "attributions": config.attributions,
      "shard_images": config.shard_images,
      "dataset": dataset_fingerprint(root, ids),
      "n_images": len(ids),
      "images_root": str(root.resolve()),
  }


def check_compatible(existing: dict, settings: dict, folder: pathlib.Path) -> None:
  """Raises :class:`CollectError` naming every setting that differs from the shards'."""
  diffs = [f"{k}: existing {existing.get(k)!r} vs requested {settings.get(k)!r}"
           for k in _SETTINGS_THAT_MUST_MATCH if existing.get(k) != settings.get(k)]
  if diffs:
    raise CollectError(
        f"{folder} already holds shards collected with different settings, and "
        "mixing them would corrupt the atlas:\n  " + "\n  ".join(diffs) +
        "\nUse a new --workdir, rerun with the original settings, or delete "
        f"{folder} to start over.")


# ----------------------------------------------------------------------------
# Collection: validate and plan (writes nothing), then run, then finish.

# Lower bounds of the integer settings (a zero batch or shard size would loop
# forever or divide by zero far from the flag that caused it).
_MIN_INTS = {"crops_per_image": 1, "image_size": 1, "batch_size": 1,
             "shard_images": 1, "loader_threads": 1, "loader_workers": 0}


@dataclasses.dataclass(frozen=True)
class Plan:
  """Everything a collection run needs, decided before anything is written.

  ``stream_samples`` reads a plan, so another collection mode (e.g. every
  position instead of one per crop) can reuse the planning and the
  streaming of model activations into shards.
  """
  config: CollectConfig
  layers: tuple[str, ...]
  root: pathlib.Path
  paths: list[str]
  ids: list[str]
  folder: pathlib.Path
  settings: dict
  map_sizes: list[tuple[int, int]]
  n_shards: int
  mine: range
  lay: distributed.ProcessLayout

  def bounds(self, k: int) -> tuple[int, int]:
    """Images ``[lo, hi)`` of shard ``k``."""
    step = self.config.shard_images
    return k * step, min((k + 1) * step, len(self.paths))

  def todo(self) -> list[int]:
    """This process's shards that are not on disk yet."""
    return [k for k in self.mine
            if not _is_finalized(_shard_path(self.folder, shard_name(k)))]


def _check_config(config: CollectConfig, model: base.Model) -> tuple[str, ...]:
  """The validated layers; raises :class:`CollectError` on any bad setting."""
  for field, low in _MIN_INTS.items():
    value = getattr(config, field)
    if not isinstance(value, int) or value < low:
      raise CollectError(f"--{field}={value!r}: must be an integer ≥ {low}.")
  layers = model.check_layers(config.layers)
  for layer in layers:
    if not model.layer(layer).spatial:
      raise CollectError(f"Layer {layer!r} has no spatial extent; atlases sample "
                         "positions of convolutional layers such as mixed4c.")
  if config.attributions:
    try:
      model.check_perturbable(layers)
    except base.NotPerturbableError as e:
      raise CollectError(f"{e} (attributions need it; collect with "
                         "attributions=False to skip them)") from None
  return layers


def _map_sizes(config: CollectConfig, model: base.Model, params,
               layers: tuple[str, ...]) -> list[tuple[int, int]]:
  """Feature-map sizes at this input size, without running the network."""
  probe = jax.eval_shape(
      lambda p, x: model.apply(p, x, layers=layers), params,
      jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 3), jnp.float32))
  sizes = [tuple(probe[layer].shape[1:3]) for layer in layers]
  for (h, w), layer in zip(sizes, layers):
    if min(h, w) < 3:
      raise CollectError(
          f"Layer {layer!r} is {h}×{w} at --image_size={config.image_size}; "
          "sampling away from the border needs at least 3×3. Use a larger "
          "--image_size or an earlier layer.")
  return sizes


def _list_photos(config: CollectConfig, images) -> tuple[pathlib.Path, list, list]:
  root = pathlib.Path(images)
  try:
    paths = workdir_lib.utf8_names(
        images_lib.list_images(root, recursive=config.recursive), "collect")
  except FileNotFoundError as e:
    raise CollectError(str(e)) from None
  if not paths:
    raise CollectError(f"No image files found under {root} (looked for "
                       f"{', '.join(images_lib.IMAGE_EXTENSIONS)}).")
  return root, paths, [os.path.relpath(p, root) for p in paths]


def plan(config: CollectConfig, model: base.Model, params,
         images: os.PathLike | str, workdir: os.PathLike | str) -> Plan:
  """Validates every input and decides the shards; writes nothing."""
  layers = _check_config(config, model)
  map_sizes = _map_sizes(config, model, params, layers)
  root, paths, ids = _list_photos(config, images)
  folder = pathlib.Path(workdir).resolve() / COLLECT_DIR
  settings = _settings(config, model, params, root, ids)
  manifest_path = folder / MANIFEST
  if manifest_path.exists():   # Refuse other settings before any write.
    check_compatible(workdir_lib.read_json(manifest_path)["settings"], settings,
                     folder)
  lay = distributed.layout()
  n_shards = -(-len(paths) // config.shard_images)
  mine = distributed.owned(n_shards, lay.process_index, lay.process_count)
  return Plan(config, layers, root, paths, ids, folder, settings, map_sizes,
              n_shards, mine, lay)


def _start_manifest(plan_: Plan) -> dict:
  """The manifest with this run's settings and process layout (written first,
  so that a later run with other settings is refused)."""
  path = plan_.folder / MANIFEST
  if path.exists():
    manifest = workdir_lib.read_json(path)
    manifest["settings"] = plan_.settings
  else:
    manifest = {"settings": plan_.settings, "shards": [], "complete": False}
  count = plan_.lay.process_count
  manifest["version"] = MANIFEST_VERSION
  manifest["processes"] = {
      "count": count, "local_devices": plan_.lay.local_devices,
      "platform": plan_.lay.platform,
      "owned_shards": [[r.start, r.stop] for r in (
          distributed.owned(plan_.n_shards, p, count) for p in range(count))]}
  if plan_.lay.is_main:
    workdir_lib.write_json(plan_.folder / IMAGE_LIST, plan_.ids)
    workdir_lib.write_json(path, manifest)
  return manifest


def run(config: CollectConfig, model: base.Model, params, images: os.PathLike | str,
        workdir: os.PathLike | str, labels: labels_lib.Labels | None = None
        ) -> dict:
  """Collects (or resumes collecting) samples into ``<workdir>/collect``.

  Validates everything first (a refused run leaves the work directory as it
  found it), holds the work directory's lock while writing, and returns the
  final manifest.
  """
  plan_ = plan(config, model, params, images, workdir)
  with workdir_lib.lock(workdir, take=plan_.lay.is_main):
    plan_.folder.mkdir(parents=True, exist_ok=True)
    manifest = _start_manifest(plan_)
    todo = plan_.todo()
    _clean_partial(plan_.folder, [shard_name(k) for k in todo])
    for k, shard in stream_samples(plan_, model, params, todo, labels):
      _save_shard(plan_.folder / (shard_name(k) + SHARD_SUFFIX), shard)
    return _finish(plan_, manifest)


def _positions(plan_: Plan, flat_images, crop_index) -> np.ndarray:
  """``[L, B, 2]`` sampled positions of every (image, crop) and layer."""
  seed = plan_.config.seed
  return np.stack([
      np.stack([sample_positions(seed, i, c, li, *plan_.map_sizes[li])
                for i, c in zip(flat_images, crop_index)])
      for li in range(len(plan_.layers))])


def _batch_samples(plan_: Plan, sample_fn, params, batch: dict, labels) -> dict:
  """The sample rows of one decoded batch (every crop of every image)."""
  crops = batch["crops"].astype(np.float32) / 255.0
  b, kc = crops.shape[:2]
  image_index = batch["index"].astype(np.int32)
  crop_index = np.tile(np.arange(kc, dtype=np.int32), b)
  flat_images = np.repeat(image_index, kc)
  positions = _positions(plan_, flat_images, crop_index)
  out = sample_fn(params, crops.reshape(b * kc, *crops.shape[2:]), positions)
  part = {key: np.asarray(v) for key, v in out.items()}
  part.update(image_index=flat_images, crop_index=crop_index,
              crop_box=batch["boxes"].reshape(b * kc, 4),
              label=np.array([label_index(plan_.ids[i], labels) for i in flat_images],
                             np.int32))
  for li, layer in enumerate(plan_.layers):
    part[f"positions/{layer}"] = positions[li].astype(np.int16)
  return part


def _assemble_shard(parts: list, reasons: list) -> dict:
  """One shard's rows, plus which images were skipped and why."""
  if parts:
    shard = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
  else:  # Every image unreadable: mark the shard so that readers skip it.
    shard = {"image_index": np.full((1,), -1, np.int32),
             EMPTY_MARK: np.ones((1,), np.int8)}
  shard["skipped"] = np.array([i for i, _ in reasons] or [-1], np.int32)
  shard["skipped_reasons"] = np.array([why for _, why in reasons] or [""])
  return shard


def stream_samples(plan_: Plan, model: base.Model, params, shards: Sequence[int],
                   labels: labels_lib.Labels | None = None):
  """Yields ``(k, shard)`` for each shard ``k`` of ``shards`` as it completes.

  Decodes the photos of those shards with the grain loader, runs the jitted
  sampler per batch and groups the rows per shard; unreadable photos are
  skipped with a warning and recorded in the shard. Shows progress.
  """
  config = plan_.config
  sample_fn = make_sample_fn(model, plan_.layers, config.attributions)
  images_per_batch = max(1, config.batch_size // config.crops_per_image)
  specs = loader_lib.batch_specs(shards, config.shard_images, len(plan_.paths),
                                 images_per_batch)
  batches_left = collections.Counter(spec.shard for spec in specs)
  box_fn = functools.partial(crop_box, config.seed, scale=tuple(config.crop_scale),
                             aspect=tuple(config.crop_aspect))
  bar = _progress_bar(plan_, shards)
  parts: dict[int, list] = {}
  failed: dict[int, list] = {}
  for batch in loader_lib.iterate(specs, plan_.paths, box_fn, config.crops_per_image,
                                  config.image_size, threads=config.loader_threads,
                                  workers=config.loader_workers):
    k = int(batch["shard"])
    for i, why in zip(batch["failed"].tolist(), batch["reasons"]):
      progress.warn(f"collect: skipping unreadable image {plan_.paths[i]}: {why}")
      failed.setdefault(k, []).append((i, why))
    if len(batch["index"]):
      parts.setdefault(k, []).append(
          _batch_samples(plan_, sample_fn, params, batch, labels))
    del batch   # Release the loader's buffer before the next one arrives.
    batches_left[k] -= 1
    if not batches_left[k]:
      yield k, _assemble_shard(parts.pop(k, []), failed.pop(k, []))
      lo, hi = plan_.bounds(k)
      bar.update(hi - lo)
      bar.set_postfix(f"shard {k + 1}/{plan_.n_shards}")
  bar.close()


def _progress_bar(plan_: Plan, shards: Sequence[int]):
  """A bar over this process's images; finished shards count as done."""
  lay = plan_.lay
  who = f"collect[{lay.process_index}/{lay.process_count}]" if (
      lay.process_count > 1) else "collect"
  size = lambda k: plan_.bounds(k)[1] - plan_.bounds(k)[0]
  owned = sum(size(k) for k in plan_.mine)
  return progress.start(owned, who, unit="image",
                        initial=owned - sum(size(k) for k in shards))


def _finish(plan_: Plan, manifest: dict) -> dict:
  """After every process's shards are on disk: the final manifest (process 0
  writes it), checked for missing shards and for an empty collection."""
  folder, path = plan_.folder, plan_.folder / MANIFEST
  distributed.barrier(f"collect-done:{folder}")
  if plan_.lay.is_main:
    manifest = _finish_manifest(manifest, folder, plan_.n_shards, plan_.bounds)
    workdir_lib.write_json(path, manifest)
  distributed.barrier(f"collect-manifest:{folder}")
  manifest = workdir_lib.read_json(path)
  if manifest.get("missing"):
    raise CollectError(
        f"Shards {', '.join(manifest['missing'][:5])} of {folder} were not written "
        "(a process stopped early); rerun collect with the same flags to finish.")
  samples, skipped = manifest["samples"], manifest["skipped"]
  if samples == 0:
    raise CollectError(
        f"None of the {len(plan_.paths)} files under {plan_.root} could be read as "
        f"an image ({skipped} skipped); nothing to build an atlas from. Check the "
        "folder.")
  if plan_.lay.is_main:
    if skipped:
      progress.warn(f"collect: skipped {skipped} unreadable image(s); see {path}")
    progress.note(f"collect: {samples} samples from {len(plan_.paths) - skipped} "
                  f"images in {folder}")
  return manifest


def _finish_manifest(manifest: dict, folder: pathlib.Path, n_shards: int,
                     bounds) -> dict:
  """The manifest listing every shard on disk (read lazily, small keys only)."""
  known = {s["name"]: s for s in manifest["shards"]}
  entries, missing = [], []
  for k in range(n_shards):
    name = shard_name(k)
    path = _shard_path(folder, name)
    if not _is_finalized(path):
      missing.append(name)
      continue
    entry = known.get(name)
    if entry is None:
      flat = _load_shard(path, ("image_index", EMPTY_MARK) + _SHARD_META)
      entry = _shard_entry(name, *bounds(k), flat)
      reasons = flat.get("skipped_reasons", np.array([], str))
      entry["skipped_reasons"] = [str(r) for r in reasons if str(r)]
    entries.append(entry)
  samples = sum(s["samples"] for s in entries)
  skipped = sum(s["skipped"] for s in entries)
  return {**manifest, "shards": entries, "complete": not missing and samples > 0,
          "missing": missing, "samples": samples, "skipped": skipped}


def _nest(flat: dict) -> dict:
  """``{"vectors/mixed4c": x}`` → ``{"vectors": {"mixed4c": x}}`` for orbax."""
  out: dict = {}
  for key, value in flat.items():
    node = out
    *parents, leaf = key.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


def _flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}/"))
    else:
      out[prefix + key] = value
  return out


def _shard_entry(name: str, lo: int, hi: int, tree: dict) -> dict:
  skipped = np.asarray(tree["skipped"])
  samples = 0 if EMPTY_MARK in tree else int(np.asarray(tree["image_index"]).shape[0])
  return {"name": name, "images": [lo, hi], "samples": samples,
          "skipped": int((skipped >= 0).sum())}


# ----------------------------------------------------------------------------
# Reading a finished collection.

@dataclasses.dataclass
class Collection:
  """A finished collection in ``<workdir>/collect``."""
  folder: pathlib.Path
  manifest: dict
  ids: list[str]

  @classmethod
  def open(cls, workdir: os.PathLike | str) -> "Collection":
    """Opens the finished collection of ``workdir``; one clear error if it is missing or
    incomplete.
    """
    folder = pathlib.Path(workdir).resolve() / COLLECT_DIR
    path = folder / MANIFEST
    if not path.exists():
      raise CollectError(f"No collection in {folder}: run experiments/collect.py "
                         f"--workdir={workdir} first.")
    manifest = workdir_lib.read_json(path)
    if not manifest.get("complete"):
      raise CollectError(f"The collection in {folder} is incomplete; rerun "
                         "experiments/collect.py with the same flags to finish it.")
    ids = workdir_lib.read_json(folder / IMAGE_LIST)
    return cls(folder, manifest, ids)

  @property
  def settings(self) -> dict:
    """The settings the collection was made with (its manifest's ``settings``)."""
    return self.manifest["settings"]

  @property
  def layers(self) -> tuple[str, ...]:
    """The collected layers, in the order they were requested."""
    return tuple(self.settings["layers"])

  def check_layer(self, layer: str) -> str:
    """``layer`` if it was collected, else a :class:`CollectError` naming those that were."""
    if layer not in self.layers:
      raise CollectError(f"Layer {layer!r} was not collected in {self.folder}; "
                         f"collected: {', '.join(self.layers)}.")
    return layer

  def iter_shards(self, keys: Sequence[str] | None = None):
    """Yields each shard as a flat dict, in canonical (image, crop) order."""
    for entry in self.manifest["shards"]:
      path = _shard_path(self.folder, entry["name"])
      if not _is_finalized(path):
        raise CollectError(f"Shard {path} listed in the manifest is missing; rerun "
                           "collect with the same flags to recompute it.")
      if not entry["samples"]:
        continue
      flat = _load_shard(path, keys)
      if keys is not None and len(flat) != len(keys):
        raise CollectError(f"Shard {path} has no {sorted(set(keys) - set(flat))}; "
                           "was it collected with other settings?")
      yield flat

  def load(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Concatenates ``keys`` (e.g. ``"vectors/mixed4c"``) over all shards."""
    parts = list(self.iter_shards(keys))
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}

  def vectors_memmap(self, layer: str, dtype=np.float32) -> np.ndarray:
    """All vectors of ``layer`` as a read-only memory-mapped ``.npy``.

    Written once by streaming the shards, so memory stays bounded.
    """
    self.check_layer(layer)
    path = self.folder / f"vectors_{workdir_lib.file_name(layer)}.npy"
    n = self.manifest["samples"]
    if not path.exists():
      depth = None
      # Per-process temporary name: several processes may build it at once.
      tmp = workdir_lib.temporary_name(path)
      out, row = None, 0
      for shard in self.iter_shards([f"vectors/{layer}"]):
        v = shard[f"vectors/{layer}"]
        if out is None:
          depth = v.shape[1]
          out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype,
                                          shape=(n, depth))
        out[row:row + len(v)] = v
        row += len(v)
      out.flush()
      del out
      os.replace(tmp, path)
    return np.load(path, mmap_mode="r")

  def export(self, path: os.PathLike | str) -> None:
    """Writes everything collected to one ``.npz`` in canonical order."""
    keys = None
    arrays: dict[str, list] = {}
    for shard in self.iter_shards():
      keys = keys or [k for k in shard if k not in _SHARD_META]
      for k in keys:
        arrays.setdefault(k, []).append(shard[k])
    out = {k.replace("/", "_"): np.concatenate(v) for k, v in arrays.items()}
    out["image_ids"] = np.array(self.ids)
    out["layers"] = np.array(self.layers)
    path = str(path) if str(path).endswith(".npz") else f"{path}.npz"
    workdir_lib.save_npz(path, **out)


