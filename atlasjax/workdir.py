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
* **Nothing written or deleted outside.** While a process holds a work
  directory's lock, every write and delete under it through this module is
  checked: the real folder it lands in (symlinks followed) must be inside the
  work directory's real path, or :class:`WorkdirError` is raised before
  anything is touched. The lock file itself is opened without following a
  symlink. :func:`remove_tree` and :func:`make_dirs` are the checked
  ``rmtree``/``mkdir``.
* **Fingerprints of inputs.** :func:`files_fingerprint` hashes the *content* of
  input files (edited photos are noticed even if their size is unchanged) and
  :func:`params_fingerprint` the bytes of every weight, so resumed work is
  reused only when it was computed from the same inputs.

Nothing here unpickles: work directories hold JSON, ``.npy``/``.npz`` loaded
with ``allow_pickle=False``, and images.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from atlasjax import readers

LOCK_FILE = ".lock"
TMP_SUFFIX = ".tmp"
# Hex digits kept of a SHA-256 in fingerprints: 64 bits, plenty to tell inputs apart.
FINGERPRINT_HEX = 16
_HASH_BLOCK = 1 << 20


class WorkdirError(RuntimeError):
  """A work directory that cannot be used now (locked by another run), or a
  write or delete that would leave it through a symlink."""


class StageMismatch(ValueError):
  """A work directory that holds a stage made from other inputs or settings."""


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


def url_path(name: str) -> str:
  """``name`` (a layer such as ``block1/attn/out``, or a relative path) as a
  relative URL path that is safe in any HTML attribute or URL hash.

  Each ``/``-separated segment keeps only allow-listed characters
  (``[A-Za-z0-9_.~-]``); every other byte is percent-encoded, so a ``:`` can
  never start a scheme (``javascript:``), nor a quote end an attribute.
  Empty, ``.`` and ``..`` segments (absolute paths, escapes from the site's
  folder) raise ``ValueError``.
  """
  import urllib.parse  # pylint: disable=g-import-not-at-top
  parts = str(name).split("/")
  if any(p in ("", ".", "..") for p in parts):
    raise ValueError(f"{name!r} is not a relative path inside the site (empty, "
                     "'.' or '..' segment, or absolute); it cannot be linked.")
  return "/".join(urllib.parse.quote(p, safe="") for p in parts)


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
  check_inside(path)
  tmp = temporary_name(path)
  try:
    with open(tmp, "xb") as f:
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


# Work-directory arrays may hold NaN where a stage means "none" (the stage
# that reads them checks values); their structure is checked here.
WORKDIR_ARRAY = readers.Array(kinds=readers.FLOAT + readers.INTEGER + readers.BOOL
                              + readers.BFLOAT16, finite=False)


def load_npy(path: os.PathLike | str) -> np.ndarray:
  """Reads an ``.npy`` written by :func:`save_npy` through
  :func:`atlasjax.readers.read_npy` (no pickles; its header's size checked
  against the file before anything is allocated)."""
  return readers.read_npy(path, WORKDIR_ARRAY)


def read_json(path: os.PathLike | str) -> Any:
  """Reads a UTF-8 JSON file through :func:`atlasjax.readers.read_json`
  (size, encoding and nesting checked). ``NaN`` is accepted: :func:`write_json`
  writes Python's ``json``, and stages record NaN for "not measured"."""
  return readers.read_json(path, allow_nan=True)


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
    if tmp.is_file() and not tmp.is_symlink() and _stays_inside(tmp):
      tmp.unlink(missing_ok=True)
      removed += 1
  return removed


def _held_root(path: pathlib.Path) -> tuple[str, str] | None:
  """``(as written, real path)`` of the held work directory ``path`` is
  under (by its spelling or its real path), or None."""
  absolute = os.path.abspath(path)
  for real, spelt in _SPELT.items():
    for root in (spelt, real):
      if absolute == root or absolute.startswith(root.rstrip(os.sep) + os.sep):
        return spelt, real
  return None


def _stays_inside(path: pathlib.Path) -> bool:
  try:
    check_inside(path)
  except WorkdirError:
    return False
  return True


def check_inside(path: os.PathLike | str) -> pathlib.Path:
  """``path``, checked to stay inside the work directory it is under.

  Applies while this process holds that work directory's :func:`lock`:
  the real folder ``path`` lands in (every symlink of its parents followed)
  must be inside the work directory's real path, and ``path`` itself must
  not be a symlink to a folder (a write replaces a symlinked file; it never
  writes through it). Paths outside every held work directory pass
  unchecked.

  Raises:
    WorkdirError: naming the symlink to remove.
  """
  path = pathlib.Path(path)
  held = _held_root(path)
  if held is None:
    return path
  spelt, real = held
  target = os.path.realpath(path)
  if not (target == real or target.startswith(real.rstrip(os.sep) + os.sep)):
    raise WorkdirError(
        f"{path} leads outside the work directory {spelt} (to {target}) "
        "through a symbolic link; refusing to write or delete there. Remove "
        "the link or use another --workdir.")
  return path


def make_dirs(path: os.PathLike | str) -> pathlib.Path:
  """``mkdir -p path``, refused (before creating anything) if ``path`` leads
  out of a held work directory through a symlink (:func:`check_inside`)."""
  path = check_inside(path)
  path.mkdir(parents=True, exist_ok=True)
  return check_inside(path)


def remove_tree(path: os.PathLike | str) -> bool:
  """Deletes the folder ``path`` and its contents; returns whether it existed.

  Never follows a symlink: ``path`` is checked with :func:`check_inside`, a
  symlink at ``path`` is refused, and links inside are removed as links
  (``shutil.rmtree``), not followed.
  """
  import shutil  # pylint: disable=g-import-not-at-top
  path = check_inside(path)
  if path.is_symlink():
    raise WorkdirError(f"{path} is a symbolic link; refusing to delete what it "
                       "points to. Remove the link or use another --workdir.")
  if not path.is_dir():
    return False
  shutil.rmtree(path)
  return True


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
# Real path -> absolute path as written, of each held work directory
# (:func:`check_inside` matches paths by either).
_SPELT: dict[str, str] = {}
# Locks taken in this process: names the job barrier of each (every process of
# a job takes the same locks in the same order).
_LOCKS_TAKEN = [0]


def _open_lock_file(path: pathlib.Path) -> int:
  """The lock file's descriptor; a symlink there is refused, never followed
  (it would make the run write its pid into whatever file it names)."""
  try:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
  except OSError as e:
    if e.errno != errno.ELOOP:
      raise
    raise WorkdirError(
        f"{path} is a symbolic link; the lock file must be a plain file. "
        "Delete the link (no run is using it) and rerun.") from None


def _job_processes() -> int:
  """Processes of the JAX job this process belongs to (1 without JAX)."""
  import sys  # pylint: disable=g-import-not-at-top
  jax = sys.modules.get("jax")
  return jax.process_count() if jax is not None else 1


def _job_barrier(workdir: pathlib.Path) -> None:
  """Waits until every process of a multi-process job reached the same lock
  (process 0 has then taken it, or failed to)."""
  from atlasjax import distributed  # pylint: disable=g-import-not-at-top
  _LOCKS_TAKEN[0] += 1
  distributed.barrier(f"workdir-lock-{_LOCKS_TAKEN[0]}-{workdir.name}")


def check_held(workdir: os.PathLike | str) -> None:
  """Raises :class:`WorkdirError` unless some process holds ``workdir``'s lock.

  What the other processes of a multi-process job check once process 0 has
  taken the lock: a process 0 refused (another run holds the folder) or a
  folder that is not the one process 0 locked (not shared) stops them too,
  before they write.
  """
  path = pathlib.Path(workdir) / LOCK_FILE
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
  except OSError:
    fd = None
  if fd is not None:
    try:
      fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        return   # held by another process: process 0 of this job
      raise
    finally:
      os.close(fd)
  raise WorkdirError(
      f"{workdir} is not locked by process 0 of this job (it was refused, or "
      "this process sees another folder); every process stops before writing. "
      "Fix process 0's error, or put --workdir on storage every process shares.")


def _follow(workdir: pathlib.Path, key: pathlib.Path) -> Iterator[pathlib.Path]:
  """:func:`lock` in a process other than 0: wait for process 0 to have
  taken the lock, check that it is held, and count the folder as held here
  (nested locks then meet no second barrier, as on process 0)."""
  if _job_processes() > 1:
    _job_barrier(workdir)
    check_held(workdir)
  _HELD[key] = 1
  _SPELT[str(key)] = os.path.abspath(workdir)
  try:
    yield workdir
  finally:
    _HELD.pop(key, None)
    _SPELT.pop(str(key), None)


@contextlib.contextmanager
def lock(workdir: os.PathLike | str, *, take: bool = True) -> Iterator[pathlib.Path]:
  """Holds ``<workdir>/.lock`` for the duration of a run.

  Re-entrant within one process (a pipeline locks, then its stages do).
  While held, writes and deletes under ``workdir`` through this module are
  checked to stay inside it (:func:`check_inside`).

  Args:
    workdir: created if missing.
    take: False in the non-main processes of a multi-process job: process 0
      holds the lock for the whole job; the others wait for it at a barrier
      and then check that it is held (:func:`check_held`).

  Raises:
    WorkdirError: another live process holds it (one line naming its pid),
      or ``.lock`` is a symlink.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  key = workdir.resolve()
  if not take and key not in _HELD:
    yield from _follow(workdir, key)
    return
  if key in _HELD:
    _HELD[key] += 1
    try:
      yield workdir
    finally:
      _HELD[key] -= 1
    return
  path = workdir / LOCK_FILE
  fd = _open_lock_file(path)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      if _job_processes() > 1:
        _job_barrier(workdir)   # the others then see it is not ours and stop
      raise WorkdirError(
          f"{workdir} is in use by {_holder(path)} (another run holds {path}); "
          "wait for it to finish or use another --workdir.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = 1
    _SPELT[str(key)] = os.path.abspath(workdir)
    if _job_processes() > 1:
      _job_barrier(workdir)
    clean_temporaries(workdir)
    yield workdir
  finally:
    _HELD.pop(key, None)
    _SPELT.pop(str(key), None)
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



# ---------------------------------------------------------------------------
# The stage skeleton.

INPUTS_SUFFIX = ".inputs.json"


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of work in a work directory, under the rule every stage keeps.

  The rule: validate every input and setting before writing anything; take
  the work directory's lock; refuse a folder whose earlier run of this stage
  was made from other inputs (the *fingerprint*: content hashes of photos
  and weights, the model, every setting that changes the result), resume
  one made from the same; write only through this module (atomic, never
  through a symlink out of the work directory). A stage built on this class
  keeps the rule by construction::

    stage = workdir.Stage(folder, "dictionary", {"weights": ..., "photos": ...})
    stage.check()              # after validating the settings: writes nothing
    with stage.run():          # lock, check again, record the fingerprint
      ...                      # resumable work, atomic writes

  Attributes:
    workdir: the work directory.
    name: the stage; its fingerprint is kept in ``<name>.inputs.json``.
    fingerprint: a JSON-ready dict; any difference from the recorded one
      refuses the run with one line naming each differing key.
  """
  workdir: pathlib.Path
  name: str
  fingerprint: dict

  @property
  def record(self) -> pathlib.Path:
    """The file that holds the fingerprint of the stage's work in the folder."""
    return pathlib.Path(self.workdir) / f"{self.name}{INPUTS_SUFFIX}"

  def check(self) -> None:
    """Raises :class:`StageMismatch` if the folder holds this stage made from
    other inputs, or :class:`WorkdirError` for a symlinked record; writes
    nothing."""
    path = self.record
    if path.is_symlink():
      raise WorkdirError(f"{path} is a symbolic link; delete it and rerun.")
    if not path.exists():
      return
    old = read_json(path)
    diff = [f"{k}: {old.get(k)!r} there, {v!r} now"
            for k, v in self.fingerprint.items() if old.get(k) != v]
    diff += [f"{k}: {old[k]!r} there, unset now" for k in old
             if k not in self.fingerprint]
    if diff:
      raise StageMismatch(
          f"{self.workdir} holds {self.name} work made from other inputs "
          f"({'; '.join(diff)}); pass another --workdir, rerun with the "
          "original inputs, or delete the folder.")

  @contextlib.contextmanager
  def run(self, *, take: bool = True) -> Iterator[pathlib.Path]:
    """Holds the lock, checks again and records the fingerprint (process 0)."""
    self.check()
    with lock(self.workdir, take=take) as folder:
      if take:
        self.check()    # a run that finished while we waited for nothing
        if not self.record.exists():
          write_json(self.record, self.fingerprint)
      yield folder


def photos_fingerprint(paths: Sequence[str]) -> str:
  """Content hash of photos (:func:`files_fingerprint` relative to the folder
  they share, so the same photos copied elsewhere hash the same)."""
  if not paths:
    return text_fingerprint([])
  root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
  return files_fingerprint(root, [os.path.relpath(p, root) for p in paths])
