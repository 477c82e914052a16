"""Work directories you can trust: atomic writes, one run at a time, fingerprints.

Every stage (collect, layout, icon rendering, the viewer, the Microscope)
writes its files through this one module, so that three promises hold
everywhere:

* **Atomic writes.** A file is written under a unique temporary name in its
  final folder (``<name>.<pid>.<random>.tmp``), flushed, fsync'ed and renamed
  over the target. A crash or ``kill -9`` at any moment leaves either the old
  file or the new one, never a truncated one; leftover temporaries are never
  read (their names end in :data:`TMP_SUFFIX`) and are removed by
  :func:`clean_temporaries` when the next run takes the lock.
* **One run per work directory.** :func:`lock` takes an advisory ``flock`` on
  ``<workdir>/.lock``; the operating system releases it when the process dies,
  however it dies, so a crashed run never blocks the next one. A second run is
  refused at once with one line naming the holder's pid. In a multi-process job
  only process 0 takes it (once per job, not per process).
* **Fingerprints of inputs.** :func:`files_fingerprint` hashes the *content* of
  input files (edited photos are noticed even if their size is unchanged) and
  :func:`params_fingerprint` the bytes of every weight, so resumed work is
  reused only when it was computed from the same inputs.

Nothing here unpickles: work directories hold JSON, ``.npy``/``.npz`` loaded
with ``allow_pickle=False``, and images.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import pathlib
import re
import secrets
from typing import Any, Callable, Iterator, Sequence

import numpy as np

LOCK_FILE = ".lock"
TMP_SUFFIX = ".tmp"
# Hex digits kept of a SHA-256 in fingerprints: 64 bits, plenty to tell inputs apart.
FINGERPRINT_HEX = 16
_HASH_BLOCK = 1 << 20


class WorkdirError(RuntimeError):
  """A work directory that cannot be used now (locked by another run)."""


# ---------------------------------------------------------------------------
# Atomic writes.

def file_name(name: str) -> str:
  """``name`` (e.g. a layer ``block1/fc2:input``) as one safe path component.

  Every character outside ``[A-Za-z0-9_.-]`` becomes ``~`` and its code in
  hex (``block1~2ffc2~3ainput``): injective (``~`` itself is escaped), a
  single component (no ``/``), and URL-safe, so the viewer can load it as is.
  GoogLeNet's names (``mixed4c``) are unchanged.
  """
  return re.sub(r"[^A-Za-z0-9_.-]", lambda m: f"~{ord(m.group()):02x}", name)


def temporary_name(path: os.PathLike | str) -> pathlib.Path:
  """A temporary name beside ``path``, unique across processes and threads."""
  path = pathlib.Path(path)
  return path.with_name(
      f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def write_with(path: os.PathLike | str, write: Callable[[Any], None]) -> None:
  """Atomically replaces ``path`` by what ``write(binary_file)`` writes.

  The temporary file is removed if ``write`` raises; the target is untouched.
  """
  path = pathlib.Path(path)
  tmp = temporary_name(path)
  try:
    with open(tmp, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      tmp.unlink()
    raise


def write_bytes(path: os.PathLike | str, data: bytes) -> None:
  """Atomically writes ``data`` to ``path``."""
  write_with(path, lambda f: f.write(data))


def write_text(path: os.PathLike | str, text: str) -> None:
  """Atomically writes UTF-8 ``text`` to ``path``."""
  write_bytes(path, text.encode("utf-8"))


def write_json(path: os.PathLike | str, value: Any, indent: int | None = 1) -> None:
  """Atomically writes ``value`` as JSON (keys in insertion order)."""
  write_text(path, json.dumps(value, indent=indent))


def save_npy(path: os.PathLike | str, array: np.ndarray) -> None:
  """Atomically writes one array as ``.npy`` (never pickled objects)."""
  write_with(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def save_npz(path: os.PathLike | str, **arrays: np.ndarray) -> None:
  """Atomically writes several arrays as an uncompressed ``.npz``."""
  write_with(path, lambda f: np.savez(f, **arrays))


def save_image(path: os.PathLike | str, image, format: str | None = None,  # pylint: disable=redefined-builtin
               **options) -> None:
  """Atomically saves a PIL image (format from the suffix unless given)."""
  path = pathlib.Path(path)
  fmt = format or {".jpg": "JPEG", ".jpeg": "JPEG"}.get(
      path.suffix.lower(), path.suffix.lstrip(".").upper())
  write_with(path, lambda f: image.save(f, fmt, **options))


def load_npy(path: os.PathLike | str) -> np.ndarray:
  """Reads an ``.npy`` written by :func:`save_npy` (pickles refused)."""
  return np.load(path, allow_pickle=False)


def read_json(path: os.PathLike | str) -> Any:
  """Reads a UTF-8 JSON file."""
  return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


def is_temporary(path: os.PathLike | str) -> bool:
  """Whether ``path`` is a temporary file of an unfinished atomic write."""
  return pathlib.Path(path).name.endswith(TMP_SUFFIX)


def clean_temporaries(folder: os.PathLike | str) -> int:
  """Removes what killed writers left under ``folder``; returns how many.

  Call only while holding the folder's :func:`lock`: then no live writer owns
  a temporary file there.
  """
  removed = 0
  for tmp in pathlib.Path(folder).rglob(f"*{TMP_SUFFIX}"):
    if tmp.is_file():
      tmp.unlink(missing_ok=True)
      removed += 1
  return removed


def utf8_names(paths: Sequence[str], stage: str) -> list[str]:
  """``paths`` without the names that are not valid UTF-8, each skipped with a
  warning naming it (its bytes): ids are written to JSON and hashed as text,
  and a name that cannot be would otherwise crash the stage midway."""
  from atlasjax import progress  # pylint: disable=g-import-not-at-top
  kept = []
  for p in paths:
    try:
      os.fspath(p).encode("utf-8")
    except UnicodeEncodeError:
      progress.warn(f"{stage}: skipping {os.fsencode(p)!r}: its name is not "
                    "valid UTF-8; rename the file to include it.")
      continue
    kept.append(p)
  return kept


# ---------------------------------------------------------------------------
# One run per work directory.

def _holder(path: pathlib.Path) -> str:
  try:
    return f"pid {int(path.read_text().split()[0])}"
  except (OSError, ValueError, IndexError):
    return "another process"


# Work directories this process holds, with nesting depth: a pipeline holds
# the lock while its stages (which lock on their own when called alone) run.
_HELD: dict[pathlib.Path, int] = {}


@contextlib.contextmanager
def lock(workdir: os.PathLike | str, *, take: bool = True) -> Iterator[pathlib.Path]:
  """Holds ``<workdir>/.lock`` for the duration of a run.

  Re-entrant within one process (a pipeline locks, then its stages do).

  Args:
    workdir: created if missing.
    take: False in the non-main processes of a multi-process job: process 0
      holds the lock for the whole job.

  Raises:
    WorkdirError: another live process holds it (one line naming its pid).
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  key = workdir.resolve()
  if not take:
    yield workdir
    return
  if key in _HELD:
    _HELD[key] += 1
    try:
      yield workdir
    finally:
      _HELD[key] -= 1
    return
  path = workdir / LOCK_FILE
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      raise WorkdirError(
          f"{workdir} is in use by {_holder(path)} (another run holds {path}); "
          "wait for it to finish or use another --workdir.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    clean_temporaries(workdir)
    _HELD[key] = 1
    yield workdir
  finally:
    _HELD.pop(key, None)
    os.close(fd)   # Releases the flock (the OS does the same if we die).


# ---------------------------------------------------------------------------
# Fingerprints.

def _short(digest) -> str:
  return digest.hexdigest()[:FINGERPRINT_HEX]


def params_fingerprint(params) -> str:
  """Hash of every weight's bytes, shape and dtype (leaf order of the tree)."""
  import jax  # Lazy: the rest of this module is plain NumPy.
  digest = hashlib.sha256()
  for leaf in jax.tree_util.tree_leaves(params):
    a = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f"{a.dtype.str}{a.shape}".encode())
    digest.update(a.tobytes())
  return _short(digest)


def file_sha256(path: os.PathLike | str) -> str:
  """Full hex SHA-256 of a file's content, read in blocks."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(_HASH_BLOCK), b""):
      digest.update(block)
  return digest.hexdigest()


def files_fingerprint(root: os.PathLike | str, names: Sequence[str]) -> str:
  """Hash of the names and contents of ``root/name`` for every name, in order.

  Content, not size or mtime: an edited photo of the same size changes it,
  and copying a folder elsewhere does not.
  """
  root = pathlib.Path(root)
  digest = hashlib.sha256()
  for name in names:
    digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(bytes.fromhex(file_sha256(root / name)))
  return _short(digest)


def text_fingerprint(value: Any) -> str:
  """Hash of a JSON-serialisable value (sorted keys)."""
  text = json.dumps(value, sort_keys=True, default=str)
  return _short(hashlib.sha256(text.encode()))


def array_fingerprint(*arrays: np.ndarray) -> str:
  """Short SHA-256 of arrays' shapes, dtypes and bytes."""
  digest = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    digest.update(f"{a.dtype.str}{a.shape}".encode())
    digest.update(a.tobytes())
  return _short(digest)

