r"""The Flax InceptionV1 against the pre-Flax ``lax`` port it replaced.

  python bench/flax_port_bench.py            # CPU; add --batch=256 on a GPU

Two checks per workload (the forward pass to ``mixed4c`` and to ``logits`` at
224 px, and the render-like ``grad`` of a ``mixed4a`` channel mean w.r.t. the
input at 128 px):

* **the compiled program**: the optimized HLO instructions of both
  implementations, with names, metadata and parameter numbering stripped, are
  compared; equal programs cost the same by construction, whatever the
  machine's load;
* **time**: interleaved rounds of both (best round and median), so load from
  other processes hits both alike.

One JSON line per workload and implementation. The legacy port lives in the
tests (``tests/models/legacy_inception_v1.py``) as the regression reference.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "models"))
from atlasjax import data as data_lib  # noqa: E402
from atlasjax import models  # noqa: E402
from atlasjax.models import weights  # noqa: E402
import hlo_digest  # noqa: E402
import legacy_inception_v1  # noqa: E402
import machine as machine_lib  # noqa: E402

_BATCH = flags.DEFINE_integer("batch", 8, "Batch size.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds.")
_MIN_TIME = flags.DEFINE_float("min_time", 0.5, "Seconds per implementation per round.")
_DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA).")


def _time(fn, *args) -> float:
  jax.block_until_ready(fn(*args))
  n, start = 0, time.perf_counter()
  while True:
    jax.block_until_ready(fn(*args))
    n += 1
    elapsed = time.perf_counter() - start
    if elapsed >= _MIN_TIME.value:
      return elapsed / n


def main(argv):
  del argv
  model, variables = models.load(data=_DATA.value)
  raw = jax.tree_util.tree_map(jnp.asarray, weights.load_raw(data_lib.googlenet_dir(_DATA.value)))
  legacy = legacy_inception_v1.build(legacy_inception_v1.BVLC_GOOGLENET)
  b = _BATCH.value
  key = jax.random.PRNGKey(0)
  x224 = jax.random.uniform(key, (b, 224, 224, 3))
  x128 = jax.random.uniform(key, (b, 128, 128, 3))

  def forward(apply, layer):
    return jax.jit(lambda p, x: apply(p, x, layers=(layer,))[layer])

  def grad(apply):
    return jax.jit(jax.grad(lambda x, p: apply(p, x, layers=("mixed4a",))["mixed4a"][..., 97].mean()))

  workloads = {
      "forward_to_mixed4c": (lambda a: forward(a, "mixed4c"), x224, b, "images/s"),
      "forward_to_logits": (lambda a: forward(a, "logits"), x224, b, "images/s"),
      "grad_mixed4a_128px": (grad, x128, b, "image-steps/s"),
  }
  impls = {"flax": (model.apply, variables), "legacy_lax": (legacy.apply, raw)}
  for name, (make, x, n, unit) in workloads.items():
    fns, digests = {}, {}
    for impl, (apply, params) in impls.items():
      fn = make(apply)
      args = (params, x) if name.startswith("forward") else (x, params)
      digests[impl] = hlo_digest.program_digest(fn.lower(*args).compile())
      fns[impl] = (fn, args)
    times = {impl: [] for impl in impls}
    for _ in range(_ROUNDS.value):
      for impl, (fn, args) in fns.items():
        times[impl].append(_time(fn, *args))
    for impl in impls:
      print(json.dumps({
          "workload": name, "implementation": impl, "batch": n,
          "figure": round(n / min(times[impl]), 2),
          "median": round(n / statistics.median(times[impl]), 2), "unit": unit,
          "same_program": digests["flax"] == digests["legacy_lax"],
          "program": digests[impl], "loadavg": os.getloadavg(),
          "machine": machine_lib.describe()}), flush=True)


if __name__ == "__main__":
  app.run(main)
