"""All-positions collection: every spatial activation vector of a layer.

An atlas samples one activation vector per photo; a dictionary learns from
every position (``mixed3b`` at 224 px: 28 × 28 = 784 vectors per photo). This
module streams photos through the model and writes their ``[positions, C]``
vectors as shards:

* ``folder/shard_00000.npy`` … float16 ``[photos_in_shard · H · W, C]``,
  positions in row-major order, photo after photo;
* ``folder/manifest.json``: the settings (model, layer, input size, photo
  list), and per finished shard its photos and row count.

Each shard is written atomically and recorded in the manifest right after, so
an interrupted collection resumes at the first unfinished shard; a folder
holding another collection's settings is refused with one clear line. The
reader, :class:`Positions`, yields shuffled fixed-size batches for training
from a few shards at a time, so memory stays bounded whatever the data size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax import images as images_lib
from atlasjax import progress
from atlasjax.features import store
from atlasjax.models import base

MANIFEST = "manifest.json"
# Photos per shard: 16 photos of mixed3b are 12,544 vectors × 480 channels
# (12 MB as float16).
DEFAULT_SHARD_PHOTOS = 16
# Photos per forward pass.
DEFAULT_BATCH = 8
# Shards mixed together when shuffling for training: a batch then draws from
# this many shards' photos, not from one shard's handful.
DEFAULT_MIX_SHARDS = 4
STORE_DTYPE = np.float16


class PositionsError(ValueError):
  """A collection folder that does not match the requested collection."""


def shard_name(index: int) -> str:
  """File stem of shard ``index`` (zero-padded, so names sort in order)."""
  return f"shard_{index:05d}.npy"


def _settings(model: base.Model, layer: str, size: int,
              paths: Sequence[str], shard_photos: int) -> dict:
  names = "\n".join(os.path.basename(p) for p in paths)
  return {"model": model.name, "layer": layer, "size": size,
          "shard_photos": shard_photos, "photos": len(paths),
          "photos_sha256": hashlib.sha256(names.encode()).hexdigest()}


def _open_manifest(folder: pathlib.Path, settings: dict) -> dict:
  path = folder / MANIFEST
  if not path.exists():
    return {"settings": settings, "shards": {}}
  manifest = store.load_json(path)
  old = manifest["settings"]
  diff = [f"{k} = {old.get(k)!r} there, {v!r} now" for k, v in settings.items()
          if old.get(k) != v]
  if diff:
    raise PositionsError(f"{folder} holds positions collected with other "
                         f"settings ({'; '.join(diff)}); pass another folder "
                         "or delete this one.")
  return manifest


def make_forward(model: base.Model, layer: str):
  """``(params, images [B, S, S, 3]) -> [B·H·W, C]`` float16, jitted."""
  @jax.jit
  def forward(params, images):
    acts = model.apply(params, images, layers=(layer,))[layer]
    return acts.reshape(-1, acts.shape[-1]).astype(STORE_DTYPE)
  return forward


def collect(model: base.Model, params, paths: Sequence[str], layer: str,
            folder: os.PathLike | str, *, size: int | None = None,
            shard_photos: int = DEFAULT_SHARD_PHOTOS,
            batch_size: int = DEFAULT_BATCH) -> "Positions":
  """Writes every position of ``layer`` for ``paths`` into ``folder``.

  Resumable: finished shards are kept and skipped. Each photo gets the
  model's evaluation crop at ``size`` (default ``model.input_size``).
  Unreadable photos are skipped and listed in the manifest.

  Returns:
    The collection as :class:`Positions`.
  """
  folder = pathlib.Path(folder)
  size = size or model.input_size
  if not model.layer(layer).spatial:
    raise ValueError(f"Layer {layer!r} of {model.name} has no spatial extent; "
                     "pick a convolutional layer.")
  manifest = _open_manifest(folder, _settings(model, layer, size, paths,
                                              shard_photos))
  forward = make_forward(model, layer)
  starts = range(0, len(paths), shard_photos)
  todo = [i for i, _ in enumerate(starts) if shard_name(i) not in manifest["shards"]]
  if len(todo) < len(starts):
    progress.note(f"positions: reusing {len(starts) - len(todo)} finished "
                  f"shard(s) in {folder}")
  load = lambda p: images_lib.load_for_model(p, size)
  with progress.bar(total=len(todo), desc=f"positions {layer}", unit="shard") as bar:
    for i in todo:
      lo = starts[i]
      report = images_lib.ReadReport()
      rows = [np.asarray(forward(params, jnp.asarray(batch.images)))
              for batch in images_lib.iter_batches(
                  paths[lo:lo + shard_photos], batch_size, load, report,
                  warn=False)]
      vectors = (np.concatenate(rows) if rows else
                 np.zeros((0, model.layer(layer).depth), STORE_DTYPE))
      store.save_npy(folder / shard_name(i), vectors)
      manifest["shards"][shard_name(i)] = {
          "photos": report.read, "rows": int(vectors.shape[0]),
          "skipped": [p for p, _ in report.failed]}
      store.save_json(folder / MANIFEST, manifest)
      bar.update(1)
  return Positions(folder)


def from_array(vectors: np.ndarray, folder: os.PathLike | str,
               settings: dict, shard_rows: int) -> "Positions":
  """Writes vectors computed elsewhere (``[N, C]``) as a collection.

  For activations that do not come from an atlasjax model (a PyTorch
  reference, another framework); ``settings`` describes where they came
  from and is checked like :func:`collect`'s on a rerun.
  """
  folder = pathlib.Path(folder)
  manifest = _open_manifest(folder, settings)
  for i, lo in enumerate(range(0, len(vectors), shard_rows)):
    part = np.asarray(vectors[lo:lo + shard_rows], STORE_DTYPE)
    store.save_npy(folder / shard_name(i), part)
    manifest["shards"][shard_name(i)] = {"photos": None, "rows": len(part),
                                         "skipped": []}
  store.save_json(folder / MANIFEST, manifest)
  return Positions(folder)


@dataclasses.dataclass(frozen=True)
class Positions:
  """A finished (or partly finished) all-positions collection."""
  folder: pathlib.Path

  def __post_init__(self):
    object.__setattr__(self, "folder", pathlib.Path(self.folder))
    if not (self.folder / MANIFEST).exists():
      raise PositionsError(f"{self.folder} holds no {MANIFEST}; collect "
                           "positions there first.")

  @property
  def manifest(self) -> dict:
    """The collection's manifest (settings, shards, row counts)."""
    return store.load_json(self.folder / MANIFEST)

  @property
  def shards(self) -> list[str]:
    """Shard file names, in order."""
    return sorted(k for k, v in self.manifest["shards"].items() if v["rows"])

  @property
  def rows(self) -> int:
    """Activation vectors (positions) in all shards together."""
    return sum(v["rows"] for v in self.manifest["shards"].values())

  @property
  def depth(self) -> int:
    """Channels of the collected layer."""
    return int(self.load(self.shards[0]).shape[1])

  def load(self, name: str) -> np.ndarray:
    """One shard's ``[rows, C]`` vectors as float32."""
    return np.load(self.folder / name, mmap_mode="r")

  def all(self, limit: int | None = None) -> np.ndarray:
    """Every vector (or the first ``limit``) as float32 ``[N, C]``."""
    out, n = [], 0
    for name in self.shards:
      part = np.asarray(self.load(name), np.float32)
      out.append(part if limit is None else part[:limit - n])
      n += len(out[-1])
      if limit is not None and n >= limit:
        break
    return np.concatenate(out)

  def batches_per_epoch(self, batch_size: int) -> int:
    """Full batches of ``batch_size`` vectors in one pass over the shards."""
    return self.rows // batch_size

  def batches(self, batch_size: int, seed: int, epoch: int, skip: int = 0,
              mix: int = DEFAULT_MIX_SHARDS) -> Iterator[np.ndarray]:
    """One epoch of shuffled ``[batch_size, C]`` float32 batches.

    The order depends only on ``(seed, epoch)``: shards are permuted, then
    groups of ``mix`` shards are loaded together and their rows permuted;
    rows left over carry into the next group and the last partial batch is
    dropped (static shapes). ``skip`` batches are passed over without being
    yielded, which is how a resumed run continues mid-epoch.
    """
    draw = np.random.default_rng([seed, epoch])
    names = [self.shards[i] for i in draw.permutation(len(self.shards))]
    carry = np.zeros((0, self.depth), np.float32)
    index = 0
    for g in range(0, len(names), mix):
      group = [np.asarray(self.load(n), np.float32) for n in names[g:g + mix]]
      pool = np.concatenate([carry] + group)
      pool = pool[draw.permutation(len(pool))]
      full = len(pool) // batch_size * batch_size
      for lo in range(0, full, batch_size):
        if index >= skip:
          yield pool[lo:lo + batch_size]
        index += 1
      carry = pool[full:]
