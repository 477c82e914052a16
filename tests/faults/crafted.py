"""Valid and crafted files of every kind atlasjax reads (issue 29).

Used by tests/test_readers.py (one crafted file per finding) and
tests/faults/test_fuzz_readers.py (mutations of the valid ones). ``.pth``
checkpoints are written opcode by opcode, without torch, in both layouts the
reader supports (torch.save's zip format and the legacy format).
"""

from __future__ import annotations

import dataclasses
import io
import re
import struct
import zipfile

import numpy as np

from atlasjax.models import pth

# Storage class names by dtype, as torch pickles them.
STORAGE_NAMES = {np.dtype(v): k for k, v in pth.STORAGE_DTYPES.items()}


@dataclasses.dataclass
class Tensor:
  """One tensor of a crafted checkpoint: its storage and the view on it."""
  values: np.ndarray          # the storage's elements, 1-D
  shape: tuple[int, ...]
  stride: tuple[int, ...]
  offset: int = 0
  numel: int | None = None    # the element count the pickle claims
  storage: str | None = None  # class name (default: from values' dtype)

  @classmethod
  def of(cls, array: np.ndarray) -> "Tensor":
    array = np.array(array, order="C")
    strides = tuple(s // max(array.itemsize, 1) for s in array.strides)
    return cls(array.reshape(-1), tuple(array.shape), strides)


def _str(s: str) -> bytes:
  raw = s.encode()
  return b"X" + struct.pack("<I", len(raw)) + raw


def _int(v: int) -> bytes:
  if -2**31 <= v < 2**31:
    return b"J" + struct.pack("<i", v)
  raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
  return b"\x8a" + bytes([len(raw)]) + raw


def _tuple(values) -> bytes:
  return b"(" + b"".join(_int(int(v)) for v in values) + b"t"


def _tensor(t: Tensor, key: str, legacy: bool) -> bytes:
  storage = t.storage or STORAGE_NAMES[t.values.dtype]
  numel = len(t.values) if t.numel is None else t.numel
  persid = (b"(" + _str("storage") + f"ctorch\n{storage}\n".encode() +
            _str(key) + _str("cpu") + _int(numel) + (b"N" if legacy else b"") +
            b"tQ")
  return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + persid + _int(t.offset) +
          _tuple(t.shape) + _tuple(t.stride) + b"\x89" +
          b"ccollections\nOrderedDict\n)Rt" + b"R")


def state_pickle(tensors: dict[str, Tensor], legacy: bool = False) -> bytes:
  """The object pickle of ``OrderedDict(name -> tensor)``; storage keys
  ``"0"``, ``"1"``… in order."""
  body = b"".join(_str(name) + _tensor(t, str(i), legacy) + b"s"
                  for i, (name, t) in enumerate(tensors.items()))
  return b"\x80\x02ccollections\nOrderedDict\n)R" + body + b"."


def zip_pth(tensors: dict[str, Tensor]) -> bytes:
  """A torch.save zip-format checkpoint of ``tensors``."""
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w") as archive:
    archive.writestr("ck/data.pkl", state_pickle(tensors))
    archive.writestr("ck/byteorder", "little")
    for i, t in enumerate(tensors.values()):
      archive.writestr(f"ck/data/{i}", t.values.astype(t.values.dtype.newbyteorder("<")).tobytes())
  return out.getvalue()


def legacy_pth(tensors: dict[str, Tensor]) -> bytes:
  """A legacy-format checkpoint (five pickles, then the raw storages)."""
  magic = b"\x80\x02" + _int(pth.LEGACY_MAGIC_NUMBER) + b"."
  version = b"\x80\x02" + _int(pth.LEGACY_PROTOCOL_VERSION) + b"."
  sys_info = b"\x80\x02}" + _str("little_endian") + b"\x88s."
  keys = b"\x80\x02](" + b"".join(_str(str(i)) for i in range(len(tensors))) + b"e."
  raw = b"".join(struct.pack("<q", len(t.values)) + t.values.tobytes()
                 for t in tensors.values())
  return magic + version + sys_info + state_pickle(tensors, legacy=True) + keys + raw


def small_state() -> dict[str, Tensor]:
  """A small state_dict: a conv weight, a bias, a BN counter."""
  rng = np.random.default_rng(0)
  return {"conv.weight": Tensor.of(rng.normal(size=(4, 3, 2, 2)).astype(np.float32)),
          "conv.bias": Tensor.of(rng.normal(size=4).astype(np.float32)),
          "bn.num_batches_tracked": Tensor.of(np.array(7, np.int64))}


def huge_view_pth() -> bytes:
  """Finding 13: a few hundred bytes whose one tensor is a 10⁶ × 10⁶ float32
  view (stride 0) of a one-element storage: 3.64 TiB if materialised."""
  t = Tensor(np.zeros(1, np.float32), (10**6, 10**6), (0, 0))
  return legacy_pth({"w": t})


def npz_bytes(arrays: dict, compressed: bool = False) -> bytes:
  """``arrays`` as ``.npz`` bytes (object arrays pickled, as numpy does)."""
  out = io.BytesIO()
  (np.savez_compressed if compressed else np.savez)(out, **arrays)
  return out.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
  """One array as ``.npy`` bytes (format 1.0)."""
  out = io.BytesIO()
  np.lib.format.write_array(out, np.asarray(array), allow_pickle=False)
  return out.getvalue()


def claim_shape(npy: bytes, shape: tuple[int, ...]) -> bytes:
  """``.npy`` bytes whose header claims ``shape``; the header keeps its
  length (its space padding absorbs the change), the data is unchanged."""
  begin = npy.index(b"{")
  end = npy.index(b"\n", begin)
  descr = re.search(rb"'descr': ('[^']*')", npy[begin:end]).group(1)
  new = b"{'descr': %s, 'fortran_order': False, 'shape': %s, }" % (
      descr, repr(tuple(shape)).encode())
  if len(new) > end - begin:
    raise ValueError("no room in the header's padding")
  return npy[:begin] + new.ljust(end - begin) + npy[end:]


def zip_members(members: dict[str, bytes]) -> bytes:
  """A stored zip of ``members`` (with correct CRCs and sizes)."""
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w") as archive:
    for name, data in members.items():
      archive.writestr(name, data)
  return out.getvalue()


def lying_npz(arrays: dict, member: str, shape: tuple[int, ...]) -> bytes:
  """An ``.npz`` of ``arrays`` whose ``member`` claims ``shape`` in its
  ``.npy`` header; zip CRCs and sizes are those of the bytes really there,
  so only the header lies."""
  members = {f"{k}.npy": npy_bytes(v) for k, v in arrays.items()}
  members[f"{member}.npy"] = claim_shape(members[f"{member}.npy"], shape)
  return zip_members(members)


def zip_bomb(member: str = "encoder", megabytes: int = 64) -> bytes:
  """A deflated ``.npz`` whose one member inflates to ``megabytes`` MiB of
  zeros from about a thousandth of that."""
  zeros = np.zeros(megabytes << 18, np.float32)
  return npz_bytes({member: zeros}, compressed=True)
