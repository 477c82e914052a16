"""Fuzzing every file reader with Hypothesis (issue 29).

Each file kind atlasjax reads starts from a valid file, which Hypothesis then
mutates in structure (change a shape or dtype, put NaN or an extreme value
in, rename, drop or add a member; for ``.pth``: shapes, strides, offsets and
element counts up to 2⁶²; for JSON: replace, delete or deeply nest a node) and
in bytes (truncate, flip bytes, make an ``.npy`` header claim another shape,
deflate). The property, for every example:

* the reader returns a correct value (the file's own arrays, with every
  invariant of the kind: finite, consistent shapes, …) or raises
  :class:`atlasjax.readers.FileFormatError` whose message is one line;
  any other exception fails;
* the Python allocations while reading (``tracemalloc`` peak, which sees
  numpy's buffers) stay within :data:`MEMORY_FACTOR` times the file's size
  plus :data:`MEMORY_SLACK` (JSON: :data:`JSON_MEMORY_FACTOR`); as a safety
  net the address space is capped at the current size plus
  :data:`ADDRESS_HEADROOM` while a reader runs, so a reader that asks for
  terabytes fails with MemoryError instead of reaching the machine.

CI runs :data:`CI_EXAMPLES` derandomized examples per kind (fewer for the
slow ViT loader, :data:`CI_EXAMPLES_OF`);
``bench/fault_injection.py --fuzz_examples=N`` runs the long budget and
reports the outcomes per kind (:data:`OUTCOMES`).

``vit_npz`` goes through ``vit.load_variables``, whose loader issue 29 moves
onto :class:`~atlasjax.readers.FileFormatError` in another change.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import functools
import io
import json
import pathlib
import resource
import shutil
import tempfile
import tracemalloc
import zipfile
from typing import Any, Callable

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from hypothesis import seed as hypothesis_seed

import crafted
from atlasjax import readers
from atlasjax.features import groups as groups_lib
from atlasjax.features import sae
from atlasjax.models import pth
from atlasjax.models import vit

CI_EXAMPLES = 100
# Kinds whose reader is slow get fewer (vit.load_variables traces the model
# for its shapes: ~0.13 s a file).
CI_EXAMPLES_OF = {"vit_npz": 20}
# A failure is reported as found: shrinking a slow reader's example can take
# minutes, and the draws printed already name every mutation.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
MEMORY_FACTOR = 8
JSON_MEMORY_FACTOR = 64
MEMORY_SLACK = 4 << 20
ADDRESS_HEADROOM = 2 << 30
# Outcomes of every example run in this process: (kind, outcome), outcome
# "loaded", "refused" or (tallying, see fuzz_test) "other: <error type>".
OUTCOMES: collections.Counter = collections.Counter()
# The first message of each (kind, "other: ...") outcome, when tallying.
FIRST_ERRORS: dict = {}
# Values that make readers overflow, allocate or divide: sizes up to 2⁶².
EXTREME_INTS = (0, 1, -1, 2, 255, 10**6, 2**31 - 1, 2**31, 2**40, 2**62)
EXTREME_FLOATS = (0.0, -1.0, 1e-38, 1e38, float("nan"), float("inf"), -float("inf"))
DTYPES = ("float16", "float64", "int32", "int8", "uint8", "bool", "complex64",
          "<U4", "object", ">f4", "V2")
# Deepest nesting a JSON mutation builds (json.dumps recurses).
MAX_NEST = 900
WORK = pathlib.Path(tempfile.mkdtemp(prefix="fuzz_readers_"))
atexit.register(shutil.rmtree, WORK, True)


@dataclasses.dataclass(frozen=True)
class Kind:
  """One file kind: a valid content, its encoding, mutations and the reader.

  Attributes:
    name: the kind, e.g. ``"dictionary"``.
    suffix: file suffix.
    valid: a valid structured content (arrays, tensors or a JSON value).
    mutate: ``(data, content) -> content``: one structured mutation.
    encode: ``(data, content) -> (bytes, honest)``: honest unless the
      encoding itself lied (an ``.npy`` header claiming another shape).
    load: the reader under test, ``path -> value``.
    check: asserts a loaded value is correct, ``(value, content, pristine)``.
    memory_factor: allowed peak allocation per byte of file.
  """
  name: str
  suffix: str
  valid: Callable[[], Any]
  mutate: Callable[[Any, Any], Any]
  encode: Callable[[Any, Any], bytes]
  load: Callable[[pathlib.Path], Any]
  check: Callable[[Any, Any, bool], None]
  memory_factor: int = MEMORY_FACTOR


@contextlib.contextmanager
def address_limit(headroom: int = ADDRESS_HEADROOM):
  """Caps this process's address space at its current size + ``headroom``."""
  soft, hard = resource.getrlimit(resource.RLIMIT_AS)
  pages = int(pathlib.Path("/proc/self/statm").read_text().split()[0])
  limit = pages * resource.getpagesize() + headroom
  if hard != resource.RLIM_INFINITY:
    limit = min(limit, hard)
  resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
  try:
    yield
  finally:
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ------------------------------------------------------------ mutations

def _mutate_arrays(data, arrays: dict) -> dict:
  """One structured mutation of a dict of arrays (or none)."""
  op = data.draw(st.sampled_from(("none", "nan", "shape", "dtype", "rename",
                                  "drop", "extra", "value")), label="op")
  if op == "none" or not arrays:
    return arrays   # the same object: a pristine file
  arrays = dict(arrays)
  name = data.draw(st.sampled_from(sorted(arrays)), label="member")
  a = np.asarray(arrays[name])
  if op == "nan" and a.dtype.kind == "f" and a.size:
    a = a.copy()
    a.reshape(-1)[data.draw(st.integers(0, a.size - 1))] = data.draw(
        st.sampled_from(EXTREME_FLOATS[4:]))
    arrays[name] = a
  elif op == "shape":
    shape = tuple(data.draw(st.lists(st.integers(0, 5), max_size=3), label="shape"))
    arrays[name] = np.resize(a.reshape(-1), shape) if a.size else np.zeros(shape, a.dtype)
  elif op == "dtype":
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    with contextlib.suppress(ValueError, TypeError):  # "conv2" as a float
      arrays[name] = (np.zeros(a.shape, "V2") if dtype == "V2"
                      else a.astype(dtype))
  elif op == "rename":
    new = data.draw(st.sampled_from(sorted(arrays)) | st.text(
        "abcdefghijklmnopqrstuvwxyz_/", min_size=1, max_size=12), label="name")
    arrays[new] = arrays.pop(name)
  elif op == "drop":
    del arrays[name]
  elif op == "extra":
    arrays[data.draw(st.text("abcxyz", min_size=1, max_size=6))] = np.ones(3)
  elif op == "value":
    value = data.draw(st.sampled_from(EXTREME_INTS + EXTREME_FLOATS), label="value")
    arrays[name] = np.full(a.shape, value, a.dtype if a.dtype.kind == "f"
                           else np.asarray(value).dtype)
  return arrays


def _encode_npz(data, arrays: dict) -> tuple[bytes, bool]:
  """Stored or deflated ``.npz`` (object arrays pickled, as numpy writes
  them), optionally with one member's header claiming another shape;
  ``(bytes, whether no header lies)``."""
  members = {}
  for name, a in arrays.items():
    out = io.BytesIO()
    np.lib.format.write_array(out, np.asarray(a), allow_pickle=True)
    members[f"{name}.npy"] = out.getvalue()
  honest = True
  if members and data.draw(st.booleans(), label="lie"):
    name = data.draw(st.sampled_from(sorted(members)))
    shape = tuple(data.draw(st.lists(st.sampled_from(EXTREME_INTS[:9]),
                                     min_size=1, max_size=3), label="claim"))
    with contextlib.suppress(ValueError, AttributeError):
      members[name], honest = crafted.claim_shape(members[name], shape), False
  compress = (zipfile.ZIP_DEFLATED if data.draw(st.booleans(), label="deflate")
              else zipfile.ZIP_STORED)
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w", compress) as archive:
    for name, raw in members.items():
      archive.writestr(name, raw)
  return out.getvalue(), honest


def _mutate_tensors(data, tensors: dict) -> dict:
  """One mutation of a crafted state_dict's tensor metadata (or none)."""
  op = data.draw(st.sampled_from(("none", "shape", "stride", "offset", "numel",
                                  "storage", "rename", "drop")), label="op")
  if op == "none":
    return tensors   # the same object: a pristine file
  tensors = {k: dataclasses.replace(v) for k, v in tensors.items()}
  name = data.draw(st.sampled_from(sorted(tensors)), label="tensor")
  t = tensors[name]
  ints = st.sampled_from(EXTREME_INTS) | st.integers(-3, 50)
  if op in ("shape", "stride"):
    setattr(t, op, tuple(data.draw(st.lists(ints, max_size=4), label=op)))
  elif op in ("offset", "numel"):
    setattr(t, op, data.draw(ints, label=op))
  elif op == "storage":
    t.storage = data.draw(st.sampled_from(sorted(pth.STORAGE_DTYPES) +
                                          ["Storage", "os.system"]))
  elif op == "rename":
    tensors[data.draw(st.text("abc._", min_size=1, max_size=8))] = tensors.pop(name)
  else:
    del tensors[name]
  return tensors


def _json_paths(value, path=()):
  """Every path to a node of a JSON value."""
  yield path
  if isinstance(value, dict):
    for k, v in value.items():
      yield from _json_paths(v, path + (k,))
  elif isinstance(value, list):
    for i, v in enumerate(value):
      yield from _json_paths(v, path + (i,))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) |
    st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) |
    st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def _mutate_json(data, value):
  """Replace, delete or deeply nest one node of a JSON value (or none)."""
  op = data.draw(st.sampled_from(("none", "replace", "delete", "nest")), label="op")
  if op == "none":
    return value   # the same object: a pristine file
  value = json.loads(json.dumps(value))
  path = data.draw(st.sampled_from(list(_json_paths(value))), label="node")
  new = (data.draw(JSON_VALUES, label="new") if op != "nest" else
         functools.reduce(lambda v, _: [v], range(data.draw(st.integers(1, MAX_NEST))),
                          None))
  if not path:
    return None if op == "delete" else new
  parent = functools.reduce(lambda v, k: v[k], path[:-1], value)
  if op == "delete":
    del parent[path[-1]]
  else:
    parent[path[-1]] = new
  return value


def _mutate_bytes(data, raw: bytes) -> tuple[bytes, bool]:
  """Truncate, flip a few bytes, or leave the encoding alone;
  ``(bytes, whether unchanged)``."""
  op = data.draw(st.sampled_from(("none", "truncate", "flip")), label="bytes")
  if op == "truncate" and raw:
    return raw[:data.draw(st.integers(0, len(raw) - 1), label="at")], False
  if op == "flip" and raw:
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
      out[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    return bytes(out), False
  return raw, True


# ------------------------------------------------------------ kinds

def _finite(tree) -> bool:
  return all(np.isfinite(np.asarray(x, np.float64)).all()
             for x in jax.tree_util.tree_leaves(tree))


def _check_dictionary(d: sae.Dictionary, arrays: dict, pristine: bool) -> None:
  c, f = d.encoder.shape
  assert d.encoder_bias.shape == (f,) and d.decoder.shape == (f, c)
  assert d.decoder_bias.shape == (c,) and 1 <= d.k <= f and d.input_scale > 0
  assert _finite([d.encoder, d.encoder_bias, d.decoder, d.decoder_bias])
  if pristine:
    for name in sae.ARRAYS:
      np.testing.assert_array_equal(getattr(d, name), arrays[name])


def _check_groups(g: groups_lib.NeuronGroups, arrays: dict, pristine: bool) -> None:
  h, w, n = g.spatial.shape
  assert g.activations.shape[:2] == (h, w) and g.channels.shape == (
      n, g.activations.shape[2])
  assert g.method in groups_lib.METHODS and g.layer
  assert _finite([g.image, g.activations, g.spatial, g.channels])
  if pristine:
    np.testing.assert_array_equal(g.channels, arrays["channels"])


def _check_state(state, tensors: dict, pristine: bool) -> None:
  assert isinstance(state, dict)
  for value in state.values():
    assert isinstance(value, np.ndarray)
  if pristine:
    assert list(state) == list(tensors)
    for name, t in tensors.items():
      np.testing.assert_array_equal(state[name], t.values.reshape(t.shape))


VIT_SPEC = vit.ViTSpec(name="vit_fuzz", width=8, depth=1, mlp_dim=16,
                       num_heads=2, patch=8, image_size=16, num_classes=3)


@functools.lru_cache(maxsize=None)
def _vit_shapes() -> dict:
  return {k: tuple(v.shape) for k, v in flatten_dict(
      vit.param_shapes(VIT_SPEC)).items()}


def _check_vit(variables, flat: dict, pristine: bool) -> None:
  assert {k: np.shape(v) for k, v in flatten_dict(variables).items()} == _vit_shapes()
  assert _finite(variables)
  if pristine:
    np.testing.assert_array_equal(
        vit.to_big_vision(variables)["embedding/kernel"], flat["embedding/kernel"])


def _check_json(schema):
  def check(value, content, pristine):
    readers.check(value, schema)
    if pristine:
      assert value == content
  return check


def _dictionary_arrays() -> dict:
  rng = np.random.default_rng(0)
  dec = rng.normal(size=(5, 4))
  return {"encoder": rng.normal(size=(4, 5)).astype(np.float32),
          "encoder_bias": rng.normal(size=5).astype(np.float32),
          "decoder": (dec / np.linalg.norm(dec, axis=1, keepdims=True)).astype(np.float32),
          "decoder_bias": rng.normal(size=4).astype(np.float32),
          "k": np.int64(2), "input_scale": np.float32(0.7)}


def _groups_arrays() -> dict:
  rng = np.random.default_rng(1)
  return {"image": rng.uniform(size=(4, 4, 3)).astype(np.float32),
          "activations": rng.uniform(size=(2, 2, 3)).astype(np.float32),
          "spatial": rng.uniform(size=(2, 2, 2)).astype(np.float32),
          "channels": rng.uniform(size=(2, 3)).astype(np.float32),
          "layer": np.array("conv2"), "method": np.array("nmf")}


@functools.lru_cache(maxsize=None)
def _vit_flat() -> dict:
  return vit.to_big_vision(vit.init(jax.random.PRNGKey(0), VIT_SPEC))


LABELS = {"layer": "mixed4c", "size": 2, "pages": "../pages",
          "cells": [{"x": 0, "y": 1, "features": [{"feature": 3, "code": 1.5},
                                                  {"feature": 9, "code": 0.25}]},
                    {"x": 1, "y": 0, "features": []}]}
ATLAS = {"version": 1, "layer": "mixed4c", "model": "googlenet",
         "other_layers": ["mixed5b/atlas.json"],
         "grids": [{"size": 2, "icon_size": 8, "directions": "grid_2/directions.npy",
                    "cells": [{"x": 0, "y": 0, "direction": 0}]}]}

NPZ = dict(mutate=_mutate_arrays, encode=_encode_npz)
KINDS = {k.name: k for k in (
    Kind("dictionary", ".npz", _dictionary_arrays, load=sae.load,
         check=_check_dictionary, **NPZ),
    Kind("groups", ".npz", _groups_arrays, load=groups_lib.load,
         check=_check_groups, **NPZ),
    Kind("vit_npz", ".npz", _vit_flat,
         load=functools.partial(vit.load_variables, VIT_SPEC), check=_check_vit,
         **NPZ),
    Kind("pth_zip", ".pth", crafted.small_state, _mutate_tensors,
         lambda data, t: (crafted.zip_pth(t), True), pth.load, _check_state),
    Kind("pth_legacy", ".pth", crafted.small_state, _mutate_tensors,
         lambda data, t: (crafted.legacy_pth(t), True), pth.load, _check_state),
    Kind("dictionary_labels", ".json", lambda: LABELS, _mutate_json,
         lambda data, v: (json.dumps(v).encode(), True),
         readers.read_dictionary_labels, _check_json(readers.DICTIONARY_LABELS),
         JSON_MEMORY_FACTOR),
    Kind("atlas_json", ".json", lambda: ATLAS, _mutate_json,
         lambda data, v: (json.dumps(v).encode(), True), readers.read_atlas,
         _check_json(readers.ATLAS), JSON_MEMORY_FACTOR),
)}


class OverMemory(AssertionError):
  """A reader allocated more than its budget for a file."""


def attempt(kind: Kind, raw: bytes, content, pristine: bool) -> str:
  """Writes ``raw``, reads it with ``kind.load`` under the memory checks and
  returns ``"loaded"`` or ``"refused"``; anything else raises."""
  path = WORK / f"{kind.name}{kind.suffix}"
  path.write_bytes(raw)
  tracemalloc.start()
  try:
    with address_limit():
      try:
        value = kind.load(path)
        outcome = "loaded"
      except readers.FileFormatError as e:
        assert "\n" not in str(e), f"a refusal on several lines: {e}"
        outcome, value = "refused", None
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  budget = kind.memory_factor * len(raw) + MEMORY_SLACK
  if peak > budget:
    raise OverMemory(f"{kind.name}: {peak} bytes allocated for a "
                     f"{len(raw)}-byte file")
  if outcome == "loaded":
    kind.check(value, content, pristine)
  return outcome


def _tally(kind: Kind, raw: bytes, content, pristine: bool) -> str:
  """:func:`attempt`, with any failure counted as ``"other: <type>"``."""
  try:
    return attempt(kind, raw, content, pristine)
  except Exception as e:  # pylint: disable=broad-except  # counted, reported
    kind_of = type(e).__name__
    if type(e).__module__ not in ("builtins", __name__):
      kind_of = f"{type(e).__module__}.{kind_of}"
    outcome = f"other: {kind_of}"
    FIRST_ERRORS.setdefault((kind.name, outcome), str(e).splitlines()[0][:300]
                            if str(e) else "")
    return outcome


def fuzz_test(kind: Kind, examples: int, seed: int | None = None,
              tally: bool = False):
  """The Hypothesis test of ``kind``: ``examples`` mutated files, derandomized
  (CI) unless ``seed`` is given; call it to run. ``tally`` counts failures
  in :data:`OUTCOMES` and goes on (the bench) instead of failing."""
  check = _tally if tally else attempt
  kind.load(_warm(kind))   # imports and first-call caches outside the budget

  @settings(max_examples=examples, deadline=None, derandomize=seed is None,
            database=None, print_blob=False, report_multiple_bugs=False,
            phases=NO_SHRINK, suppress_health_check=list(HealthCheck))
  @given(st.data())
  def run(data):
    valid = kind.valid()
    content = kind.mutate(data, valid)
    raw, honest = kind.encode(data, content)
    raw, unchanged = _mutate_bytes(data, raw)
    pristine = content is valid and honest and unchanged
    OUTCOMES[(kind.name, check(kind, raw, content, pristine))] += 1

  return run if seed is None else hypothesis_seed(seed)(run)


def _warm(kind: Kind) -> pathlib.Path:
  path = WORK / f"warm_{kind.name}{kind.suffix}"
  valid = kind.valid()
  if kind.suffix == ".npz":
    path.write_bytes(crafted.npz_bytes(valid))
  elif kind.suffix == ".pth":
    path.write_bytes(crafted.zip_pth(valid))
  else:
    path.write_text(json.dumps(valid))
  return path


@pytest.mark.parametrize("name", sorted(KINDS))
def test_fuzz(name):
  """Mutated files of ``name``: a correct load or one FileFormatError line,
  within the memory budget (see the module docstring)."""
  before = sum(n for (k, _), n in OUTCOMES.items() if k == name)
  examples = CI_EXAMPLES_OF.get(name, CI_EXAMPLES)
  fuzz_test(KINDS[name], examples)()
  runs = {o: n for (k, o), n in OUTCOMES.items() if k == name}
  assert sum(runs.values()) - before >= examples, runs
  assert runs.get("refused") and runs.get("loaded"), runs   # both exercised
