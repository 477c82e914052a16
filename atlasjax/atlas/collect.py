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

import dataclasses
import functools
import hashlib
import json
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
from atlasjax.atlas import loader as loader_lib
from atlasjax.models import base

MANIFEST = "manifest.json"
IMAGE_LIST = "images.json"
COLLECT_DIR = "collect"
SHARD_PREFIX = "shard_"
SHARD_SUFFIX = ".npz"
_TMP_SUFFIX = ".tmp.npz"
# 2: shards are .npz files and the manifest records the process layout.
MANIFEST_VERSION = 2
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
# Fingerprints.

def params_fingerprint(params) -> str:
  """Short SHA-256 of every parameter's bytes: which weights a collection used."""
  digest = hashlib.sha256()
  for leaf in jax.tree_util.tree_leaves(params):
    digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return digest.hexdigest()[:16]


def dataset_fingerprint(root: pathlib.Path, ids: Sequence[str]) -> str:
  """Hash of the image ids and their sizes (cheap for any number of files)."""
  digest = hashlib.sha256()
  for image_id in ids:
    digest.update(image_id.encode())
    digest.update(str((root / image_id).stat().st_size).encode())
  return digest.hexdigest()[:16]


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

def _atomic_write_json(path: pathlib.Path, value) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(value, indent=1))
  os.replace(tmp, path)


def _atomic_save_npy(path: pathlib.Path, array: np.ndarray) -> None:
  tmp = path.with_name(path.stem + ".tmp.npy")   # np.save appends no suffix then.
  np.save(tmp, array)
  os.replace(tmp, path)


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
  tmp = path.with_name(path.name[:-len(SHARD_SUFFIX)] + _TMP_SUFFIX)
  with open(tmp, "wb") as f:
    np.savez(f, **flat)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _load_shard(path: pathlib.Path, keys=None) -> dict:
  """A shard as a flat dict (``keys`` only, read lazily from the .npz)."""
  if _is_legacy(path):
    # Orbax is slow to import and only needed for version-1 collections.
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    flat = _flatten(ocp.PyTreeCheckpointer().restore(path))
  else:
    with np.load(path) as npz:
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
# Collection.

def run(config: CollectConfig, model: base.Model, params, images: os.PathLike | str,
        workdir: os.PathLike | str, labels: labels_lib.Labels | None = None
        ) -> dict:
  """Collects (or resumes collecting) samples into ``<workdir>/collect``.

  Returns the final manifest.
  """
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
  if config.crops_per_image < 1:
    raise CollectError("--crops_per_image must be at least 1.")
  root = pathlib.Path(images)
  paths = images_lib.list_images(root, recursive=config.recursive)
  if not paths:
    raise CollectError(f"No image files found under {root} (looked for "
                       f"{', '.join(images_lib.IMAGE_EXTENSIONS)}).")
  ids = [os.path.relpath(p, root) for p in paths]
  folder = pathlib.Path(workdir).resolve() / COLLECT_DIR  # orbax wants absolute.
  folder.mkdir(parents=True, exist_ok=True)
  settings = _settings(config, model, params, root, ids)
  manifest_path = folder / MANIFEST
  if manifest_path.exists():
    manifest = json.loads(manifest_path.read_text())
    check_compatible(manifest["settings"], settings, folder)
    manifest["settings"]["images_root"] = settings["images_root"]
  else:
    manifest = {"version": MANIFEST_VERSION, "settings": settings, "shards": [],
                "complete": False}
  lay = distributed.layout()
  n_shards = -(-len(paths) // config.shard_images)
  mine = distributed.owned(n_shards, lay.process_index, lay.process_count)
  manifest["version"] = MANIFEST_VERSION
  manifest["processes"] = {
      "count": lay.process_count, "local_devices": lay.local_devices,
      "platform": lay.platform,
      "owned_shards": [[r.start, r.stop] for r in (
          distributed.owned(n_shards, p, lay.process_count)
          for p in range(lay.process_count))]}
  if lay.is_main:   # Settings first, so a mismatched later run is refused.
    _atomic_write_json(folder / IMAGE_LIST, ids)
    _atomic_write_json(manifest_path, manifest)

  # Feature-map sizes at this input size, without running the network.
  probe = jax.eval_shape(
      lambda p, x: model.apply(p, x, layers=layers), params,
      jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 3), jnp.float32))
  map_sizes = [probe[layer].shape[1:3] for layer in layers]
  for hw in map_sizes:
    if min(hw) < 3:
      sample_positions(0, 0, 0, 0, *hw)  # Raises the explanatory error.
  sample_fn = make_sample_fn(model, layers, config.attributions)
  bounds = lambda k: (k * config.shard_images,
                      min((k + 1) * config.shard_images, len(paths)))
  todo = [k for k in mine if not _is_finalized(_shard_path(folder, shard_name(k)))]
  _clean_partial(folder, [shard_name(k) for k in todo])
  images_per_batch = max(1, config.batch_size // config.crops_per_image)
  specs = loader_lib.batch_specs(todo, config.shard_images, len(paths),
                                 images_per_batch)
  batches_left = {k: 0 for k in todo}
  for spec in specs:
    batches_left[spec.shard] += 1
  box_fn = functools.partial(crop_box, config.seed, scale=tuple(config.crop_scale),
                             aspect=tuple(config.crop_aspect))
  who = f"collect[{lay.process_index}/{lay.process_count}]" if (
      lay.process_count > 1) else "collect"
  # Shards finished by an earlier run count as done, so the ETA covers the rest.
  owned = sum(bounds(k)[1] - bounds(k)[0] for k in mine)
  pending = sum(bounds(k)[1] - bounds(k)[0] for k in todo)
  bar = progress.start(owned, who, unit="image", initial=owned - pending)
  parts: dict[int, list] = {}
  failed: dict[int, list] = {}
  for batch in loader_lib.iterate(specs, paths, box_fn, config.crops_per_image,
                                  config.image_size, threads=config.loader_threads,
                                  workers=config.loader_workers):
    k = int(batch["shard"])
    for i, why in zip(batch["failed"].tolist(), batch["reasons"]):
      progress.warn(f"collect: skipping unreadable image {paths[i]}: {why}")
      failed.setdefault(k, []).append((i, why))
    if len(batch["index"]):
      crops = batch["crops"].astype(np.float32) / 255.0
      b, kc = crops.shape[:2]
      image_index = batch["index"].astype(np.int32)
      crop_index = np.tile(np.arange(kc, dtype=np.int32), b)
      flat_images = np.repeat(image_index, kc)
      positions = np.stack([
          np.stack([sample_positions(config.seed, i, c, li, *map_sizes[li])
                    for i, c in zip(flat_images, crop_index)])
          for li in range(len(layers))])
      out = sample_fn(params, crops.reshape(b * kc, *crops.shape[2:]), positions)
      part = {key: np.asarray(v) for key, v in out.items()}
      part.update(image_index=flat_images, crop_index=crop_index,
                  crop_box=batch["boxes"].reshape(b * kc, 4),
                  label=np.array([label_index(ids[i], labels) for i in flat_images],
                                 np.int32))
      for li, layer in enumerate(layers):
        part[f"positions/{layer}"] = positions[li].astype(np.int16)
      parts.setdefault(k, []).append(part)
    del batch   # Release the loader's buffer before the next one arrives.
    batches_left[k] -= 1
    if batches_left[k]:
      continue
    shard_parts, reasons = parts.pop(k, []), failed.pop(k, [])
    if shard_parts:
      shard = {key: np.concatenate([p[key] for p in shard_parts])
               for key in shard_parts[0]}
    else:  # Every image unreadable: mark the shard so that readers skip it.
      shard = {"image_index": np.full((1,), -1, np.int32),
               EMPTY_MARK: np.ones((1,), np.int8)}
    shard["skipped"] = np.array([i for i, _ in reasons] or [-1], np.int32)
    shard["skipped_reasons"] = np.array([why for _, why in reasons] or [""])
    _save_shard(folder / (shard_name(k) + SHARD_SUFFIX), shard)
    lo, hi = bounds(k)
    bar.update(hi - lo)
    bar.set_postfix(f"shard {k + 1}/{n_shards}")
  bar.close()

  # Every process's shards are on disk after this; process 0 lists them.
  distributed.barrier(f"collect-done:{folder}")
  if lay.is_main:
    manifest = _finish_manifest(manifest, folder, n_shards, bounds)
    _atomic_write_json(manifest_path, manifest)
  distributed.barrier(f"collect-manifest:{folder}")
  manifest = json.loads(manifest_path.read_text())
  if manifest.get("missing"):
    raise CollectError(
        f"Shards {', '.join(manifest['missing'][:5])} of {folder} were not written "
        "(a process stopped early); rerun collect with the same flags to finish.")
  samples, skipped = manifest["samples"], manifest["skipped"]
  if samples == 0:
    raise CollectError(
        f"None of the {len(paths)} files under {root} could be read as an image "
        f"({skipped} skipped); nothing to build an atlas from. Check the folder.")
  if lay.is_main:
    if skipped:
      progress.warn(f"collect: skipped {skipped} unreadable image(s); see "
                    f"{manifest_path}")
    progress.note(f"collect: {samples} samples from {len(paths) - skipped} "
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
    manifest = json.loads(path.read_text())
    if not manifest.get("complete"):
      raise CollectError(f"The collection in {folder} is incomplete; rerun "
                         "experiments/collect.py with the same flags to finish it.")
    ids = json.loads((folder / IMAGE_LIST).read_text())
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
    path = self.folder / f"vectors_{layer}.npy"
    n = self.manifest["samples"]
    if not path.exists():
      depth = None
      # Per-process temporary name: several processes may build it at once.
      tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npy")
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
    np.savez(path, **out)


