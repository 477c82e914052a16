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
fingerprint, shard list), ``images.json`` (image ids) and one orbax checkpoint
per shard of ``shard_images`` consecutive images. Orbax finalises a shard by
renaming its temporary folder, so a shard is either complete or absent; the
manifest is replaced atomically after each shard. Re-running resumes from the
finished shards (after a crash or ``kill -9`` at any moment), and a run whose
settings differ from the manifest's refuses to mix shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import pathlib
import shutil
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image

from atlasjax import images as images_lib
from atlasjax import labels as labels_lib
from atlasjax.models import base

MANIFEST = "manifest.json"
IMAGE_LIST = "images.json"
COLLECT_DIR = "collect"
SHARD_PREFIX = "shard_"
MANIFEST_VERSION = 1
TOP_K = 5
EMPTY_MARK = "empty"
# Random crops are drawn in normalised image coordinates: area fraction and
# aspect ratio of the box relative to the (unit-square) image.
DEFAULT_CROP_SCALE = (0.1, 1.0)
DEFAULT_CROP_ASPECT = (3 / 4, 4 / 3)
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
  crops_per_image: int = 1
  crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE
  crop_aspect: tuple[float, float] = DEFAULT_CROP_ASPECT
  image_size: int = 224
  attributions: bool = True
  batch_size: int = 32       # forward-pass batch (images × crops)
  shard_images: int = 128    # images per shard
  recursive: bool = True


# ----------------------------------------------------------------------------
# Fingerprints.

def params_fingerprint(params) -> str:
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

def _rng(seed: int, *ids: int) -> np.random.Generator:
  return np.random.default_rng([seed, *ids])


def crop_box(seed: int, image_index: int, crop_index: int, crops_per_image: int,
             width: int, height: int, scale=DEFAULT_CROP_SCALE,
             aspect=DEFAULT_CROP_ASPECT) -> tuple[float, float, float, float]:
  """Pixel box ``(x0, y0, x1, y1)`` of one crop.

  With one crop per image it is the standard evaluation crop (the centre square
  of side 224/256 of the shorter side); otherwise a random box whose area is a
  ``scale`` fraction and aspect ``aspect`` in normalised coordinates.
  """
  if crops_per_image == 1:
    side = min(width, height) * images_lib.EVAL_CROP / images_lib.EVAL_RESIZE
    x0, y0 = (width - side) / 2, (height - side) / 2
    return (x0, y0, x0 + side, y0 + side)
  rng = _rng(seed, image_index, crop_index)
  area = rng.uniform(*scale)
  log_aspect = rng.uniform(np.log(aspect[0]), np.log(aspect[1]))
  w = min(1.0, np.sqrt(area * np.exp(log_aspect)))
  h = min(1.0, np.sqrt(area / np.exp(log_aspect)))
  u, v = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
  return (u * width, v * height, (u + w) * width, (v + h) * height)


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
  return f"{SHARD_PREFIX}{index:05d}"


def _is_finalized(path: pathlib.Path) -> bool:
  return path.is_dir() and (path / "_CHECKPOINT_METADATA").exists()


def _clean_partial(folder: pathlib.Path) -> None:
  """Removes temporary folders a killed orbax save left behind."""
  for entry in folder.iterdir():
    if entry.name.startswith(SHARD_PREFIX) and not _is_finalized(entry):
      shutil.rmtree(entry, ignore_errors=True)


def label_index(image_id: str, labels: labels_lib.Labels | None) -> int:
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

def _loader(config: CollectConfig, seed: int, index_of: dict[str, int]):
  size = config.image_size

  def load(path: str):
    image = images_lib.load_pil(path)
    i = index_of[path]
    crops, boxes = [], []
    for c in range(config.crops_per_image):
      box = crop_box(seed, i, c, config.crops_per_image, *image.size,
                     scale=config.crop_scale, aspect=config.crop_aspect)
      crops.append(np.asarray(image.resize((size, size), Image.BILINEAR, box=box),
                              dtype=np.float32) / 255.0)
      boxes.append(box)
    return np.stack(crops), np.asarray(boxes, np.float32)

  return load


def _collate(items):
  return (np.stack([c for c, _ in items]), np.stack([b for _, b in items]))


def run(config: CollectConfig, model: base.Model, params, images: os.PathLike | str,
        workdir: os.PathLike | str, labels: labels_lib.Labels | None = None,
        log=print) -> dict:
  """Collects (or resumes collecting) samples into ``<workdir>/collect``.

  Returns the final manifest.
  """
  layers = model.check_layers(config.layers)
  for layer in layers:
    if not model.layer(layer).spatial:
      raise CollectError(f"Layer {layer!r} has no spatial extent; atlases sample "
                         "positions of convolutional layers such as mixed4c.")
  if config.attributions and "perturb" not in inspect.signature(
      model.apply).parameters:
    raise CollectError(
        f"Model {model.name!r} does not accept `perturb`, which attributions "
        "need (see atlasjax.models.base); collect with attributions=False.")
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
  _atomic_write_json(folder / IMAGE_LIST, ids)
  _clean_partial(folder)

  # Feature-map sizes at this input size, without running the network.
  probe = jax.eval_shape(
      lambda p, x: model.apply(p, x, layers=layers), params,
      jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 3), jnp.float32))
  map_sizes = [probe[layer].shape[1:3] for layer in layers]
  for hw in map_sizes:
    if min(hw) < 3:
      sample_positions(0, 0, 0, 0, *hw)  # Raises the explanatory error.
  sample_fn = make_sample_fn(model, layers, config.attributions)
  index_of = {p: i for i, p in enumerate(paths)}
  load = _loader(config, config.seed, index_of)
  n_shards = -(-len(paths) // config.shard_images)
  by_name = {s["name"]: s for s in manifest["shards"]}
  checkpointer = ocp.PyTreeCheckpointer()
  images_per_batch = max(1, config.batch_size // config.crops_per_image)
  start, done_images = time.perf_counter(), 0
  # Images in shards still to compute, counted once (for the ETA).
  pending = sum(min((j + 1) * config.shard_images, len(paths)) - j * config.shard_images
                for j in range(n_shards) if not _is_finalized(folder / shard_name(j)))
  for k in range(n_shards):
    name = shard_name(k)
    lo, hi = k * config.shard_images, min((k + 1) * config.shard_images, len(paths))
    if _is_finalized(folder / name):
      if name not in by_name:  # Killed between the shard save and the manifest.
        by_name[name] = _shard_entry(name, lo, hi, checkpointer.restore(folder / name))
      continue
    report = images_lib.ReadReport()
    parts = []
    for batch in images_lib.iter_batches(paths[lo:hi], images_per_batch, load=load,
                                         report=report, collate=_collate):
      crops, boxes = batch.images
      b, kc = crops.shape[:2]
      image_index = (batch.indices + lo).astype(np.int32)
      crop_index = np.tile(np.arange(kc, dtype=np.int32), b)
      flat_images = np.repeat(image_index, kc)
      positions = np.stack([
          np.stack([sample_positions(config.seed, i, c, li, *map_sizes[li])
                    for i, c in zip(flat_images, crop_index)])
          for li in range(len(layers))])
      out = sample_fn(params, crops.reshape(b * kc, *crops.shape[2:]), positions)
      part = {key: np.asarray(v) for key, v in out.items()}
      part.update(image_index=flat_images, crop_index=crop_index,
                  crop_box=boxes.reshape(b * kc, 4),
                  label=np.array([label_index(ids[i], labels) for i in flat_images],
                                 np.int32))
      for li, layer in enumerate(layers):
        part[f"positions/{layer}"] = positions[li].astype(np.int16)
      parts.append(part)
    if parts:
      shard = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    else:  # Orbax cannot store empty arrays: mark an all-unreadable shard.
      shard = {"image_index": np.full((1,), -1, np.int32),
               EMPTY_MARK: np.ones((1,), np.int8)}
    shard["skipped"] = np.array(
        [index_of[p] for p, _ in report.failed] or [-1], np.int32)
    checkpointer.save(folder / name, _nest(shard))
    by_name[name] = _shard_entry(name, lo, hi, _nest(shard))
    by_name[name]["skipped_reasons"] = [why for _, why in report.failed]
    manifest["shards"] = [by_name[n] for n in sorted(by_name)]
    _atomic_write_json(manifest_path, manifest)
    done_images += hi - lo
    rate = done_images / max(time.perf_counter() - start, 1e-9)
    pending -= hi - lo
    log(f"collect: shard {k + 1}/{n_shards} done ({hi}/{len(paths)} images, "
        f"{rate:.1f} img/s, ETA {pending / max(rate, 1e-9):.0f} s)")
  manifest["shards"] = [by_name[n] for n in sorted(by_name)]
  samples = sum(s["samples"] for s in manifest["shards"])
  skipped = sum(s["skipped"] for s in manifest["shards"])
  if samples == 0:
    raise CollectError(
        f"None of the {len(paths)} files under {root} could be read as an image "
        f"({skipped} skipped); nothing to build an atlas from. Check the folder.")
  manifest["complete"] = True
  manifest["samples"] = samples
  manifest["skipped"] = skipped
  _atomic_write_json(manifest_path, manifest)
  if skipped:
    log(f"collect: skipped {skipped} unreadable image(s); see {manifest_path}")
  log(f"collect: {samples} samples from {len(paths) - skipped} images in {folder}")
  return manifest


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
    return self.manifest["settings"]

  @property
  def layers(self) -> tuple[str, ...]:
    return tuple(self.settings["layers"])

  def check_layer(self, layer: str) -> str:
    if layer not in self.layers:
      raise CollectError(f"Layer {layer!r} was not collected in {self.folder}; "
                         f"collected: {', '.join(self.layers)}.")
    return layer

  def iter_shards(self, keys: Sequence[str] | None = None):
    """Yields each shard as a flat dict, in canonical (image, crop) order."""
    checkpointer = ocp.PyTreeCheckpointer()
    for entry in self.manifest["shards"]:
      path = self.folder / entry["name"]
      if not _is_finalized(path):
        raise CollectError(f"Shard {path} listed in the manifest is missing; rerun "
                           "collect with the same flags to recompute it.")
      flat = _flatten(checkpointer.restore(path))
      if not entry["samples"]:
        continue
      yield flat if keys is None else {k: flat[k] for k in keys}

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
      tmp = path.with_name(path.name + ".tmp.npy")
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
      keys = keys or [k for k in shard if k != "skipped"]
      for k in keys:
        arrays.setdefault(k, []).append(shard[k])
    out = {k.replace("/", "_"): np.concatenate(v) for k, v in arrays.items()}
    out["image_ids"] = np.array(self.ids)
    out["layers"] = np.array(self.layers)
    np.savez(path, **out)


