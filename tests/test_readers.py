"""One reader per file kind (issue 29): crafted files, one per finding.

Each test failed on main before the readers: findings 10, 11 and 13 of the
issue, and its suspicion that zip entries and ``.npz`` members are read whole
before their size is checked (they were: ``np.load`` allocated what a member's
header claimed, 1 GiB from a 300-byte file). Mutations of every kind at scale
are in tests/faults/test_fuzz_readers.py.
"""

import json
import pathlib
import sys
import tracemalloc

import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent / "faults"))
import crafted  # pylint: disable=g-import-not-at-top,wrong-import-position
import toy_model  # pylint: disable=g-import-not-at-top,wrong-import-position
from atlasjax import readers  # pylint: disable=g-import-not-at-top,wrong-import-position
from atlasjax.features import groups as groups_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from atlasjax.features import sae  # pylint: disable=g-import-not-at-top,wrong-import-position
from atlasjax.models import pth  # pylint: disable=g-import-not-at-top,wrong-import-position

# What a refusal may allocate (headers, messages): far below the lies told.
REFUSAL_BYTES = 1 << 20
GIB = 1 << 30


def dictionary_arrays(c=6, f=10, k=3, scale=0.5, seed=0) -> dict:
  rng = np.random.default_rng(seed)
  dec = rng.normal(size=(f, c))
  dec /= np.linalg.norm(dec, axis=1, keepdims=True)
  return {"encoder": rng.normal(size=(c, f)).astype(np.float32),
          "encoder_bias": rng.normal(size=f).astype(np.float32),
          "decoder": dec.astype(np.float32),
          "decoder_bias": rng.normal(size=c).astype(np.float32),
          "k": np.int64(k), "input_scale": np.float32(scale)}


def write(path: pathlib.Path, data: bytes) -> pathlib.Path:
  path.write_bytes(data)
  return path


def refused(load, path, *needles) -> int:
  """Asserts ``load(path)`` raises one FileFormatError line holding every
  needle; returns the peak bytes allocated meanwhile."""
  tracemalloc.start()
  try:
    with pytest.raises(readers.FileFormatError) as info:
      load(path)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  message = str(info.value)
  assert "\n" not in message and str(path) in message, message
  for needle in needles:
    assert needle in message, message
  return peak


# ------------------------------------------------ sizes before allocation

def test_npz_member_claiming_more_than_it_holds_allocates_nothing(tmp_path):
  """The suspicion, confirmed on main: np.load allocated the 1 GiB the header
  of a 48-byte member claimed before finding the data short."""
  arrays = dictionary_arrays()
  path = write(tmp_path / "dictionary.npz",
               crafted.lying_npz(arrays, "encoder", (1 << 14, 1 << 14)))
  assert path.stat().st_size < 2000
  for load in (sae.load, readers.read_npz):
    assert refused(load, path, "'encoder'", "1073741824 bytes") < REFUSAL_BYTES


def test_zip_bomb_is_refused_from_the_directory_before_inflating(tmp_path):
  """A deflated dictionary inflating ~1000:1 (36 MiB from ~40 KiB): main read
  it whole; the directory's sizes now refuse it before a byte is inflated."""
  arrays = dictionary_arrays()
  features = (4 << 20) // 6   # a 16 MiB encoder and decoder of zeros
  arrays.update(encoder=np.zeros((6, features), np.float32),
                encoder_bias=np.zeros(features, np.float32),
                decoder=np.zeros((features, 6), np.float32))
  path = write(tmp_path / "dictionary.npz", crafted.npz_bytes(arrays, True))
  assert path.stat().st_size < (32 << 20) // 100
  assert refused(sae.load, path, "zip bomb") < REFUSAL_BYTES


def test_finding_13_a_tiny_pth_cannot_ask_for_terabytes(tmp_path):
  """A 256-byte .pth viewing one float as 10⁶ × 10⁶ (stride 0): main tried to
  allocate 3.64 TiB (MemoryError); every tensor is now capped by its storage
  and all of them by the file's size."""
  path = write(tmp_path / "lite0.pth", crafted.huge_view_pth())
  assert path.stat().st_size < 443
  assert refused(pth.load, path, "[1000000, 1000000]") < REFUSAL_BYTES


def test_pickle_memo_index_is_capped_by_the_pickle_length(tmp_path):
  """LONG_BINPUT 2²⁴ in a 12-byte pickle: CPython's unpickler grows its memo
  table to that index (128 MiB here, 32 GiB at 2³¹) before storing."""
  path = write(tmp_path / "memo.pth", b"\x80\x02Nr\x00\x00\x00\x01.")
  assert refused(pth.load, path, "memo index 16777216") < REFUSAL_BYTES


def test_pth_zip_storage_size_is_checked_from_the_directory(tmp_path):
  state = crafted.small_state()
  state["conv.bias"].numel = 5   # the pickle says 5 floats, the member has 4
  path = write(tmp_path / "bias.pth", crafted.zip_pth(state))
  refused(pth.load, path, "storage '1' has 16 bytes, expected 5 × 4")


def test_lying_npy_is_refused_before_allocation(tmp_path):
  npy = crafted.claim_shape(crafted.npy_bytes(np.zeros((3, 4), np.float32)),
                            (GIB // 4, 4))
  path = write(tmp_path / "directions.npy", npy)
  assert refused(readers.read_npy, path, "4294967296 bytes") < REFUSAL_BYTES


# ---------------------------------------------------- finding 10: one line

@pytest.mark.parametrize("damage", ["truncated", "npy", "k_of_shape_2"])
def test_finding_10_malformed_dictionary_is_one_line(tmp_path, damage):
  arrays = dictionary_arrays()
  data = crafted.npz_bytes(arrays)
  if damage == "truncated":   # main: zipfile.BadZipFile
    data = data[:len(data) // 2]
  elif damage == "npy":       # an .npy passed as .npz
    data = crafted.npy_bytes(arrays["encoder"])
  else:                       # main: TypeError from int(k)
    data = crafted.npz_bytes({**arrays, "k": np.array([2, 3])})
  path = write(tmp_path / "dictionary.npz", data)
  needle = {"truncated": "not a readable zip", "npy": "single .npy array",
            "k_of_shape_2": "'k' must be one number"}[damage]
  refused(sae.load, path, needle, "experiments/dictionary.py")


# --------------------------------------------- finding 11: values checked

@pytest.mark.parametrize("change, needle", [
    ({"decoder": np.ones((10, 7), np.float32)}, "its C is 7"),
    ({"input_scale": np.float32(0.0)}, "input_scale=0.0 must be above zero"),
    ({"k": np.int64(0)}, "k=0 must be at least 1"),
    ({"k": np.int64(11)}, "k=11 is more than its 10 features"),
    ({"encoder_bias": np.full(10, np.nan, np.float32)}, "NaN"),
    ({"encoder": np.ones((6, 10), np.float64).astype(object)}, "Python objects"),
])
def test_finding_11_dictionary_values_are_validated(tmp_path, change, needle):
  path = write(tmp_path / "dictionary.npz",
               crafted.npz_bytes({**dictionary_arrays(), **change}))
  refused(sae.load, path, needle)


def test_dictionary_round_trip_and_fit_to_its_layer(tmp_path):
  arrays = dictionary_arrays(c=16)   # the toy CNN's conv2 has 16 channels
  d = sae.Dictionary(*(jnp.asarray(arrays[n]) for n in sae.ARRAYS), k=3,
                     input_scale=0.5)
  back = sae.load(sae.save(d, tmp_path / "dictionary.npz"))
  for name in sae.ARRAYS:
    np.testing.assert_array_equal(getattr(back, name), arrays[name])
  assert (back.k, back.input_scale) == (3, 0.5)
  sae.check_fits(back, toy_model.TOY_MODEL, "conv2")
  with pytest.raises(ValueError, match="reads 16 channels; conv1 has 8"):
    sae.check_fits(back, toy_model.TOY_MODEL, "conv1")


# ------------------------------------------------------------ neuron groups

def groups_example() -> groups_lib.NeuronGroups:
  rng = np.random.default_rng(0)
  return groups_lib.NeuronGroups(
      "conv2", rng.uniform(size=(8, 8, 3)).astype(np.float32),
      rng.uniform(size=(3, 3, 6)).astype(np.float32),
      rng.uniform(size=(3, 3, 2)).astype(np.float32),
      rng.uniform(size=(2, 6)).astype(np.float32), "nmf")


def test_groups_file_round_trip_and_refusals(tmp_path):
  g = groups_example()
  back = groups_lib.load(groups_lib.save(g, tmp_path / "ok"))
  assert (back.layer, back.method, back.n) == ("conv2", "nmf", 2)
  np.testing.assert_array_equal(back.channels, g.channels)
  arrays = {"image": g.image, "activations": g.activations, "spatial": g.spatial,
            "channels": np.ones((2, 5), np.float32), "layer": np.array("conv2"),
            "method": np.array("nmf")}
  path = write(tmp_path / "groups.npz", crafted.npz_bytes(arrays))
  refused(groups_lib.load, path, "'channels'", "its C is 5")
  arrays.update(channels=g.channels, method=np.array("magic"))
  refused(groups_lib.load, write(path, crafted.npz_bytes(arrays)),
          "unknown method 'magic'")


# --------------------------------------------------------------------- JSON

LABELS = {"layer": "mixed4c", "size": 2, "pages": "../pages",
          "cells": [{"x": 0, "y": 1, "features": [{"feature": 3, "code": 1.5}]}]}


@pytest.mark.parametrize("text, needle", [
    (json.dumps({**LABELS, "cells": [{"x": 0, "y": 1, "features": [
        {"feature": "3", "code": 1}]}]}), "cells[0].features[0].feature must be int"),
    (json.dumps({k: v for k, v in LABELS.items() if k != "cells"}),
     "lacks the key 'cells'"),
    (json.dumps(LABELS).replace("1.5", "NaN"), "NaN is not JSON"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper"),
    (json.dumps(LABELS)[:-3], "not valid UTF-8 JSON"),
    (b"\xff\xfe".decode("latin-1"), "not valid UTF-8 JSON"),
])
def test_dictionary_labels_structure_is_checked(tmp_path, text, needle):
  path = tmp_path / "dictionary_labels.json"
  path.write_bytes(text.encode("latin-1" if text.startswith("\xff") else "utf-8"))
  refused(readers.read_dictionary_labels, path, needle)


def test_json_size_is_capped_before_reading(tmp_path):
  path = tmp_path / "atlas.json"
  path.write_text(json.dumps({"layer": "x", "grids": [], "pad": " " * 5000}))
  with pytest.raises(readers.FileFormatError, match="more than the 4096"):
    readers.read_json(path, readers.ATLAS, max_bytes=4096)
  assert readers.read_atlas(path)["layer"] == "x"
  assert readers.read_dictionary_labels(
      write(tmp_path / "l.json", json.dumps(LABELS).encode())) == LABELS
