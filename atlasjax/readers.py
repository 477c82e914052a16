"""Readers of the files atlasjax loads: one per file kind (issue 29).

Every reader checks structure, shapes, dtypes, finiteness and sizes before a
value is used, and refuses a bad file with :class:`FileFormatError`: one line
naming the file, what is wrong and the fix. Scripts print it as one
``error:`` line (it is a ``ValueError``).

Memory is bounded by the file's own size: a reader trusts no length field
before it has checked it against the bytes that are there.

* **zip archives** (:func:`open_zip`): the central directory is checked
  first (no encryption, only stored or deflated members, each member's
  declared size within the archive's size times :data:`MAX_ZIP_EXPANSION`,
  stored members no larger than the archive) and a member is then read only
  up to its declared size, CRC checked.
* **``.npz`` arrays** (:func:`read_npz`): each member's ``.npy`` header is read
  alone, its dtype refused if it holds Python objects, and its
  ``shape × itemsize`` compared with the member's size in the zip directory
  *before* the array is allocated; then dtypes, shapes (named dimensions must
  agree across arrays) and finiteness are checked against an
  :class:`Array` spec per member. Nothing is ever unpickled.
* **JSON** (:func:`read_json`): a size cap before reading, strict UTF-8, no
  ``NaN``/``Infinity``, a nesting cap, and a structure check against a small
  schema (:func:`check`).

The ``.pth`` reader (:mod:`atlasjax.models.pth`), dictionaries
(:func:`atlasjax.features.sae.load`), neuron groups
(:func:`atlasjax.features.groups.load`) and the atlas and label manifests use
these.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pathlib
import zipfile
import zlib
from typing import Any, Mapping

import numpy as np

# A member may declare at most this many bytes per byte of the whole archive
# (deflate reaches ~1000:1 on zeros; atlasjax and big_vision write stored
# members, so a real file stays near 1:1). Refuses zip bombs before a byte
# is inflated.
MAX_ZIP_EXPANSION = 32
# Slack on the total, for tiny archives of small members.
ZIP_SLACK_BYTES = 1 << 20
# numpy's own cap on an .npy header (format.read_array_header_*).
NPY_MAX_HEADER_BYTES = 10_000
NPY_MAGIC = b"\x93NUMPY"
NPY_SUFFIX = ".npy"
# Member data is copied into its array in chunks of this many bytes.
READ_CHUNK_BYTES = 1 << 20
# JSON files larger than this are refused unread (atlas.json of a 100×100
# grid with examples is a few MB).
MAX_JSON_BYTES = 256 << 20
# Deepest JSON nesting accepted (atlasjax writes 5 levels at most).
MAX_JSON_DEPTH = 64
# numpy dtype kinds: floats, integers, booleans, strings, and 2-byte void
# (how np.save stores bfloat16, big_vision's ``recover_dtype``).
FLOAT, INTEGER, BOOL, STRING, BFLOAT16 = "f", "iu", "b", "U", "V"
BFLOAT16_EXPONENT = 0x7F80


class FileFormatError(ValueError):
  """A file that is not what it should be; the message names the file, the
  problem and the fix, on one line."""


def refuse(path: os.PathLike | str, problem: str, fix: str) -> FileFormatError:
  """The one-line error for ``path``: ``"<path>: <problem>; <fix>"``."""
  line = f"{path}: {problem}; {fix}"
  return FileFormatError(" ".join(line.split()))


# ---------------------------------------------------------------------------
# zip archives


# Errors zipfile and the npy parser raise on damaged bytes.
DAMAGED = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
           ValueError, NotImplementedError, KeyError, IndexError, OverflowError,
           UnicodeDecodeError, SyntaxError, TypeError, RecursionError)


class Archive:
  """A zip archive whose central directory has been checked
  (see :func:`open_zip`); members are read with :meth:`read` or
  :meth:`open`, never beyond their checked size."""

  def __init__(self, zf: zipfile.ZipFile, label: str, fix: str):
    self.zip, self.label, self.fix = zf, label, fix
    self.members = {info.filename: info for info in zf.infolist()}

  def __enter__(self) -> Archive:
    return self

  def __exit__(self, *exc) -> None:
    self.zip.close()

  def size(self, name: str) -> int:
    """Declared (checked) uncompressed size of member ``name``."""
    return self.members[name].file_size

  def open(self, name: str):
    """A stream of member ``name`` (raises :class:`FileFormatError` if absent
    or if its local header is damaged)."""
    if name not in self.members:
      raise refuse(self.label, f"no member {name!r}", self.fix)
    try:
      return self.zip.open(self.members[name])
    except DAMAGED as e:
      raise refuse(self.label, f"member {name!r} is damaged "
                   f"({type(e).__name__}: {e})", self.fix) from None

  def read(self, name: str) -> bytes:
    """Member ``name`` whole (its size is already checked), CRC verified."""
    try:
      with self.open(name) as f:
        data = f.read(self.size(name))
        complete = len(data) == self.size(name) and not f.read(1)
    except DAMAGED as e:
      raise refuse(self.label, f"member {name!r} is damaged "
                   f"({type(e).__name__}: {e})", self.fix) from None
    if not complete:
      raise refuse(self.label, f"member {name!r} does not hold the "
                   f"{self.size(name)} bytes its directory entry says", self.fix)
    return data


def _check_directory(zf: zipfile.ZipFile, total: int, label: str, fix: str) -> None:
  """Refuses what an archive's central directory says before any member is
  read: encryption, unknown compression, sizes the file cannot hold."""
  seen, declared = set(), 0
  for info in zf.infolist():
    where = f"member {info.filename!r}"
    if info.filename in seen:
      raise refuse(label, f"{where} appears twice", fix)
    seen.add(info.filename)
    if info.flag_bits & 0x1:
      raise refuse(label, f"{where} is encrypted", fix)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
      raise refuse(label, f"{where} uses zip compression method "
                   f"{info.compress_type} (only stored or deflated)", fix)
    if info.header_offset + info.compress_size > total:
      raise refuse(label, f"{where} ends past the end of the file "
                   "(truncated archive?)", fix)
    if (info.compress_type == zipfile.ZIP_STORED
        and info.file_size != info.compress_size):
      raise refuse(label, f"{where} is stored but declares {info.file_size} "
                   f"bytes in {info.compress_size}", fix)
    declared += info.file_size
  if declared > MAX_ZIP_EXPANSION * total + ZIP_SLACK_BYTES:
    raise refuse(label, f"its members declare {declared} bytes in a "
                 f"{total}-byte archive (more than {MAX_ZIP_EXPANSION}× "
                 "expansion: a zip bomb or a corrupt directory)", fix)


def open_zip(source: os.PathLike | str | bytes, *, label: str | None = None,
             fix: str = "re-save or re-download the file") -> Archive:
  """Opens a zip archive after checking its directory (see the module doc).

  Args:
    source: a path, or the archive's bytes.
    label: how errors name the file (default: the path).
    fix: the remedy errors suggest.
  """
  in_memory = isinstance(source, (bytes, bytearray))
  label = label or ("archive" if in_memory else str(source))
  total = len(source) if in_memory else os.stat(source).st_size
  try:
    zf = zipfile.ZipFile(io.BytesIO(source) if in_memory else source)
  except DAMAGED as e:
    raise refuse(label, f"not a readable zip archive ({type(e).__name__}: {e})"
                 f"{_npy_hint(source, in_memory)}", fix) from None
  try:
    _check_directory(zf, total, label, fix)
  except BaseException:
    zf.close()
    raise
  return Archive(zf, label, fix)


def _npy_hint(source, in_memory: bool) -> str:
  """A hint when a single ``.npy`` array was given where a zip was expected."""
  if in_memory:
    head = bytes(source[:len(NPY_MAGIC)])
  else:
    with open(source, "rb") as f:
      head = f.read(len(NPY_MAGIC))
  return " (it is a single .npy array)" if head == NPY_MAGIC else ""


# ---------------------------------------------------------------------------
# .npz arrays


@dataclasses.dataclass(frozen=True)
class Array:
  """What one ``.npz`` member must be.

  Attributes:
    shape: ``None`` (any), or one entry per axis: an ``int`` (exact), a ``str``
      (a named size that every array of the file using that name must share,
      e.g. ``("C", "F")`` and ``("F", "C")``) or ``None`` (any size).
    kinds: the numpy dtype kinds accepted (:data:`FLOAT`, :data:`INTEGER`, …
      concatenated).
    finite: refuse NaN and ±inf (float and bfloat16 arrays).
    optional: the member may be absent.
  """
  shape: tuple | None = None
  kinds: str = FLOAT
  finite: bool = True
  optional: bool = False


# Any numeric array (the default for files read without a per-member spec).
ANY_ARRAY = Array(kinds=FLOAT + INTEGER + BOOL + BFLOAT16)


def _dtype_ok(dtype: np.dtype, kinds: str) -> bool:
  if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
    return False
  if dtype.kind == "V":
    return BFLOAT16 in kinds and dtype.itemsize == 2
  return dtype.kind in kinds


def _npy_header(f, label: str, name: str, fix: str):
  """``(shape, fortran_order, dtype, header_bytes)`` of an ``.npy`` stream,
  reading only its header."""
  magic = f.read(len(NPY_MAGIC) + 2)
  if magic[:len(NPY_MAGIC)] != NPY_MAGIC or len(magic) != len(NPY_MAGIC) + 2:
    raise refuse(label, f"member {name!r} is not an .npy array", fix)
  version = (magic[-2], magic[-1])
  if version not in ((1, 0), (2, 0)):
    raise refuse(label, f"member {name!r} has .npy format version {version} "
                 "(1.0 or 2.0 expected)", fix)
  width = 2 if version == (1, 0) else 4
  size_field = f.read(width)
  length = int.from_bytes(size_field, "little") if len(size_field) == width else -1
  if not 0 < length <= NPY_MAX_HEADER_BYTES:
    raise refuse(label, f"member {name!r} has an .npy header of {length} bytes",
                 fix)
  header = f.read(length)
  read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                 else np.lib.format.read_array_header_2_0)
  try:
    shape, fortran, dtype = read_header(io.BytesIO(size_field + header),
                                        max_header_size=NPY_MAX_HEADER_BYTES)
  except DAMAGED as e:
    raise refuse(label, f"member {name!r} has a malformed .npy header ({e})",
                 fix) from None
  return shape, fortran, dtype, len(magic) + width + length


def _check_shape(shape: tuple, spec: Array, dims: dict, label: str, name: str,
                 fix: str) -> None:
  if spec.shape is None:
    return
  if len(shape) != len(spec.shape):
    raise refuse(label, f"{name!r} has shape {list(shape)}, expected "
                 f"{len(spec.shape)} axes {_pattern(spec.shape)}", fix)
  for size, want in zip(shape, spec.shape):
    if isinstance(want, str):
      if dims.setdefault(want, size) != size:
        raise refuse(label, f"{name!r} has shape {list(shape)}: its {want} is "
                     f"{size} but another array's {want} is {dims[want]}", fix)
    elif want is not None and size != want:
      raise refuse(label, f"{name!r} has shape {list(shape)}, expected "
                   f"{_pattern(spec.shape)}", fix)


def _pattern(shape: tuple) -> str:
  return "[" + ", ".join("any" if s is None else str(s) for s in shape) + "]"


def _read_body(f, nbytes: int, label: str, name: str, fix: str) -> np.ndarray:
  """Exactly ``nbytes`` of ``f`` into a fresh uint8 array, chunk by chunk;
  reading to the end makes zipfile verify the member's CRC."""
  out = np.empty(nbytes, np.uint8)
  pos = 0
  while pos < nbytes:
    chunk = f.read(min(READ_CHUNK_BYTES, nbytes - pos))
    if not chunk:
      break
    out[pos:pos + len(chunk)] = np.frombuffer(chunk, np.uint8)
    pos += len(chunk)
  if pos != nbytes or f.read(1):
    raise refuse(label, f"member {name!r} does not hold the bytes its header "
                 "says", fix)
  return out


def _finite(array: np.ndarray) -> bool:
  if array.dtype.kind == "f":
    return bool(np.isfinite(array).all())
  if array.dtype.kind == "V":  # bfloat16 bits: all-ones exponent is inf/NaN
    bits = array.view(np.uint16)
    return not bool(((bits & BFLOAT16_EXPONENT) == BFLOAT16_EXPONENT).any())
  return True


def read_array(f, size: int, spec: Array, dims: dict, *, label: str,
               name: str, fix: str) -> np.ndarray:
  """One ``.npy`` stream of ``size`` bytes checked against ``spec``: its
  header's dtype and shape are checked, and ``shape × itemsize`` compared with
  the bytes after the header, before the array is allocated; finiteness after.
  ``dims`` collects the named sizes (shared across a file's arrays)."""
  shape, fortran, dtype, header = _npy_header(f, label, name, fix)
  if not _dtype_ok(dtype, spec.kinds):
    raise refuse(label, f"{name!r} has dtype {dtype} (kinds {spec.kinds!r} "
                 "expected, never Python objects)", fix)
  _check_shape(shape, spec, dims, label, name, fix)
  nbytes = math.prod(shape) * dtype.itemsize
  if header + nbytes != size:
    raise refuse(label, f"{name!r} claims shape {list(shape)} of {dtype} "
                 f"({nbytes} bytes) in {size - header} bytes of data", fix)
  array = _read_body(f, nbytes, label, name, fix).view(dtype)
  array = (array.reshape(shape[::-1]).T if fortran else array.reshape(shape))
  if not dtype.isnative and dtype.kind != "V":
    array = array.astype(dtype.newbyteorder("="))
  if spec.finite and not _finite(array):
    raise refuse(label, f"{name!r} holds NaN or infinite values", fix)
  return array


def read_npy(path: os.PathLike | str, spec: Array = ANY_ARRAY, *,
             fix: str = "re-create the file with the stage that writes it"
             ) -> np.ndarray:
  """One ``.npy`` file, checked like an ``.npz`` member (:func:`read_array`)."""
  path = pathlib.Path(path)
  try:
    with open(path, "rb") as f:
      return read_array(f, os.fstat(f.fileno()).st_size, spec, {},
                        label=str(path), name=path.stem, fix=fix)
  except (FileFormatError, FileNotFoundError):
    raise
  except DAMAGED as e:
    raise refuse(path, f"damaged .npy file ({type(e).__name__}: {e})",
                 fix) from None


def read_npz(path: os.PathLike | str, spec: Mapping[str, Array] | None = None,
             *, default: Array | None = ANY_ARRAY,
             fix: str = "re-save the file with numpy.savez"
             ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
  """The arrays of an ``.npz`` file, each checked before it is allocated.

  Args:
    path: the file.
    spec: ``{name: Array}``: the members to read and what each must be;
      missing required members are refused, members not named are not read
      (unless ``default`` is given: then they are read and checked with it).
    default: the spec of members ``spec`` does not name; ``None`` ignores them.
    fix: the remedy the error names.

  Returns:
    ``(arrays, dims)``: ``{name: np.ndarray}`` (bfloat16 members stay 2-byte
    void, as numpy reads them) and the named sizes of the spec's shapes.

  Raises:
    FileFormatError: anything amiss, on one line.
  """
  spec = dict(spec or {})
  arrays, dims = {}, {}
  with open_zip(path, fix=fix) as archive:
    names = {}
    for member in archive.members:
      if not member.endswith(NPY_SUFFIX):
        raise refuse(path, f"member {member!r} is not an .npy array", fix)
      names[member[:-len(NPY_SUFFIX)]] = member
    missing = [n for n, s in spec.items() if n not in names and not s.optional]
    if missing:
      raise refuse(path, f"it lacks {', '.join(missing)} (it has "
                   f"{', '.join(sorted(names)) or 'no arrays'})", fix)
    for name, member in names.items():
      want = spec.get(name, default)
      if want is not None:
        try:
          with archive.open(member) as f:
            arrays[name] = read_array(f, archive.size(member), want, dims,
                                      label=str(path), name=name, fix=fix)
        except FileFormatError:
          raise
        except DAMAGED as e:
          raise refuse(path, f"member {name!r} is damaged ({type(e).__name__}: "
                       f"{e})", fix) from None
  return arrays, dims


def scalar(arrays: Mapping[str, np.ndarray], name: str, path, fix: str, *,
           minimum: float | None = None, integer: bool = False):
  """``arrays[name]`` as a Python number, checked to be one value
  (``shape ()`` or ``[1]``), an integer if asked and at least ``minimum``."""
  value = np.asarray(arrays[name])
  if value.size != 1 or value.ndim > 1:
    raise refuse(path, f"{name!r} must be one number, got shape "
                 f"{list(value.shape)}", fix)
  value = value.reshape(())
  number = int(value) if value.dtype.kind in INTEGER + BOOL else float(value)
  if integer and number != int(number):
    raise refuse(path, f"{name!r} must be an integer, got {number}", fix)
  if minimum is not None and not number >= minimum:
    raise refuse(path, f"{name}={number} must be at least {minimum}", fix)
  return int(number) if integer else number


# ---------------------------------------------------------------------------
# JSON


@dataclasses.dataclass(frozen=True)
class Opt:
  """A dict key's schema in :func:`check` when the key may be absent."""
  schema: Any


@dataclasses.dataclass(frozen=True)
class Each:
  """Schema of a JSON object used as a mapping: ``str`` keys, every value
  matching ``schema``."""
  schema: Any


NUMBER = (int, float)
NULL = type(None)


def _type_names(types) -> str:
  types = types if isinstance(types, tuple) else (types,)
  return " or ".join("null" if t is NULL else t.__name__ for t in types)


def check(value: Any, schema: Any, where: str = "top level") -> None:
  """Checks a JSON value against a small schema; raises ``TypeError`` naming
  the place (callers turn it into :class:`FileFormatError`).

  A schema is a type or tuple of types (``bool`` never counts as ``int``), a
  one-item list ``[item_schema]`` (a list of such items), a dict
  ``{key: schema}`` (an object with those keys; :class:`Opt` marks optional
  ones; other keys are allowed), :class:`Each` (an object used as a map) or
  ``None`` (anything).
  """
  if schema is None:
    return
  if isinstance(schema, list):
    _expect(value, list, where)
    for i, item in enumerate(value):
      check(item, schema[0], f"{where}[{i}]")
  elif isinstance(schema, dict):
    _expect(value, dict, where)
    for key, sub in schema.items():
      if key in value:
        check(value[key], sub.schema if isinstance(sub, Opt) else sub,
              f"{where}.{key}")
      elif not isinstance(sub, Opt):
        raise TypeError(f"{where} lacks the key {key!r}")
  elif isinstance(schema, Each):
    _expect(value, dict, where)
    for key, item in value.items():
      check(item, schema.schema, f"{where}.{key}")
  else:
    _expect(value, schema, where)


def _expect(value: Any, types, where: str) -> None:
  types = types if isinstance(types, tuple) else (types,)
  if isinstance(value, bool) and bool not in types:
    ok = False
  else:
    ok = isinstance(value, types)
  if not ok:
    raise TypeError(f"{where} must be {_type_names(types)}, got "
                    f"{'null' if value is None else type(value).__name__}")


def _no_constant(name: str):
  raise ValueError(f"{name} is not JSON")


def _depth(value: Any) -> int:
  """Nesting depth of a parsed JSON value (iterative: no recursion limit)."""
  deepest, stack = 0, [(value, 1)]
  while stack:
    item, level = stack.pop()
    deepest = max(deepest, level)
    if isinstance(item, dict):
      stack.extend((v, level + 1) for v in item.values())
    elif isinstance(item, list):
      stack.extend((v, level + 1) for v in item)
  return deepest


def read_json(path: os.PathLike | str, schema: Any = None, *,
              fix: str = "re-create the file with the stage that writes it",
              max_bytes: int = MAX_JSON_BYTES, allow_nan: bool = False) -> Any:
  """A JSON file, refused unread above ``max_bytes`` and checked against
  ``schema`` (see :func:`check`). ``allow_nan`` accepts the ``NaN`` and
  ``Infinity`` that Python's ``json`` writes (a stage's own records).

  Raises:
    FileFormatError: too large, not UTF-8, not JSON (``NaN``/``Infinity``
      included), nested deeper than :data:`MAX_JSON_DEPTH`, or not matching
      ``schema``; one line.
  """
  path = pathlib.Path(path)
  size = path.stat().st_size
  if size > max_bytes:
    raise refuse(path, f"{size} bytes is more than the {max_bytes} a JSON "
                 "file may hold here", fix)
  with open(path, "rb") as f:  # read(n) allocates n: ask for what stat saw
    data = f.read(size + 1)
  if len(data) > size:
    raise refuse(path, f"grew past {max_bytes} bytes while read", fix)
  try:
    value = json.loads(data.decode("utf-8"),
                       **({} if allow_nan else {"parse_constant": _no_constant}))
  except RecursionError:
    raise refuse(path, f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
                 fix) from None
  except (UnicodeDecodeError, ValueError) as e:
    raise refuse(path, f"not valid UTF-8 JSON ({e})", fix) from None
  if _depth(value) > MAX_JSON_DEPTH:
    raise refuse(path, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", fix)
  try:
    check(value, schema)
  except TypeError as e:
    raise refuse(path, f"unexpected structure: {e}", fix) from None
  return value


# ---------------------------------------------------------------------------
# Schemas of atlasjax's own JSON files

# grid_<n>/dictionary_labels.json (atlasjax.microscope.dictionary.label_atlas).
DICTIONARY_LABELS = {
    "layer": str, "size": int, "pages": Opt((str, NULL)),
    "cells": [{"x": int, "y": int,
               "features": [{"feature": int, "code": NUMBER}]}],
}
DICTIONARY_LABELS_FIX = ("re-create it with experiments/dictionary_pages.py "
                         "--atlas=ATLAS_WORKDIR")
# atlas.json, at the level the readers rely on before the viewer's own checks.
ATLAS = {"layer": str, "grids": [dict], "other_layers": Opt([str])}
ATLAS_FIX = "re-run the atlas pipeline (experiments/atlas.py) for this workdir"


def read_dictionary_labels(path: os.PathLike | str) -> dict:
  """``dictionary_labels.json``: ``layer``, ``size``, ``pages`` and per cell
  its ``x``, ``y`` and ``features`` (``feature`` id, ``code``), checked."""
  return read_json(path, DICTIONARY_LABELS, fix=DICTIONARY_LABELS_FIX)


def read_atlas(path: os.PathLike | str) -> dict:
  """``atlas.json``, checked to hold a ``layer`` and a list of ``grids``."""
  return read_json(path, ATLAS, fix=ATLAS_FIX)


__all__ = ["FileFormatError", "Archive", "Array", "Opt", "Each", "open_zip",
           "read_npz", "read_npy", "read_array", "scalar", "read_json", "check",
           "read_dictionary_labels", "read_atlas"]
