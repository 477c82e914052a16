r"""Writes a SigLIP-layout two-tower ``.npz`` of random weights, full size.

  nice -n 5 python bench/siglip_file.py --variant=So400m/14 --out=/tmp/so400m.npz
  python experiments/render.py --model=big_vision --weights=/tmp/so400m.npz \
      --objective=channel:block13/mlp/fc2:input:0-1 --size=224 --steps=4 --out=/tmp/r

For the end-to-end check that a published-size SigLIP tower goes through the
same scripts as GoogLeNet (published weights cannot be fetched here). The
image tower is ``ViT(spec)`` with random weights, written in big_vision's
current layout (``vit.to_big_vision``), its blocks stacked as ``lax.scan``
writes them (``Transformer/encoderblock/…`` with a leading depth axis, as the
SigLIP 2 files are), stored in bfloat16 as ``np.save`` writes it (a 2-byte
void type), under ``params/img/``; beside it a small text tower with
big_vision's ``text_transformer`` key names, ``params/t`` and ``params/b``
(the loader never reads them).
"""

import json
import os
import pathlib
import time

from absl import app
from absl import flags
import jax
import ml_dtypes
import numpy as np

from atlasjax.models import vit

_VARIANT = flags.DEFINE_string("variant", "So400m/14", "big_vision variant.")
_SIZE = flags.DEFINE_integer("image_size", 224, "Input side.")
_OUT = flags.DEFINE_string("out", None, "Where to write the .npz.", required=True)
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed of the weights.")
SCAN_PREFIX = "Transformer/encoderblock_"


def scanned(flat: dict) -> dict:
  """``encoderblock_K/…`` stacked into ``encoderblock/…`` (big_vision's scan layout)."""
  out = {k: v for k, v in flat.items() if not k.startswith(SCAN_PREFIX)}
  depth = len({k.split("/")[1] for k in flat if k.startswith(SCAN_PREFIX)})
  for key in (k for k in flat if k.startswith(SCAN_PREFIX + "0/")):
    rest = key[len(SCAN_PREFIX + "0/"):]
    out["Transformer/encoderblock/" + rest] = np.stack(
        [flat[f"{SCAN_PREFIX}{i}/{rest}"] for i in range(depth)])
  return out


def as_saved_bfloat16(x: np.ndarray) -> np.ndarray:
  return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).view(np.void(2).dtype)


def main(argv):
  del argv
  t = time.perf_counter()
  spec = vit.variant(_VARIANT.value, image_size=_SIZE.value, pool="map", num_classes=0)
  variables = vit.init(jax.random.PRNGKey(_SEED.value), spec)
  flat = {"params/img/" + k: as_saved_bfloat16(v)
          for k, v in scanned(vit.to_big_vision(variables)).items()}
  del variables
  width = 16   # a stand-in text tower: big_vision's key names, small shapes
  flat.update({"params/txt/Embed_0/embedding": np.zeros((32, width), np.float32),
               "params/txt/pos_embedding": np.zeros((1, 8, width), np.float32),
               "params/txt/Encoder_0/encoder_norm/scale": np.ones(width, np.float32),
               "params/txt/Encoder_0/encoder_norm/bias": np.zeros(width, np.float32),
               "params/txt/head/kernel": np.zeros((width, width), np.float32),
               "params/t": np.zeros(1, np.float32), "params/b": np.zeros(1, np.float32)})
  out = pathlib.Path(_OUT.value)
  tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.npz")
  np.savez(tmp, **flat)
  os.replace(tmp, out)
  print(json.dumps({"variant": _VARIANT.value, "params": vit.param_count(spec),
                    "file_bytes": out.stat().st_size,
                    "seconds": round(time.perf_counter() - t, 1), "out": str(out)}))


if __name__ == "__main__":
  app.run(main)
