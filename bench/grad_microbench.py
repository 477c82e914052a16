r"""The ceiling for any renderer schedule: a bare jitted gradient, by batch size.

  python bench/grad_microbench.py [--layer=mixed4a --side=140 --batch=1,4,8,32]
  XLA_FLAGS=--xla_cpu_experimental_xnn_fusion_type=... python bench/grad_microbench.py

``jax.jit(jax.grad(f))`` of one channel's mean at ``--layer`` with respect to
a ``[batch, side, side, 3]`` input (140 px is what 128 px renders become
after the standard transforms' padding). No parameterization, transforms or
optimizer: it is the convolutions alone. Prints one JSON line per batch with
GFLOP/s (XLA cost analysis) and the implied image-steps/s.
"""

import json
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

import machine  # bench/machine.py (this script's folder is on sys.path)
from atlasjax import models

_LAYER = flags.DEFINE_string("layer", "mixed4a", "Deepest layer.")
_SIDE = flags.DEFINE_integer("side", 140, "Input side in px.")
_BATCH = flags.DEFINE_list("batch", ["1", "4", "8", "32"], "Batch sizes.")
_REPS = flags.DEFINE_integer("reps", 3, "Timed calls per batch size.")


def main(argv):
  del argv
  model, params = models.load()
  layer = _LAYER.value
  f = jax.jit(jax.grad(
      lambda x: model.apply(params, x, layers=(layer,))[layer][..., 0].mean()))
  for b in (int(v) for v in _BATCH.value):
    x = jnp.full((b, _SIDE.value, _SIDE.value, 3), 0.5, jnp.float32)
    t = time.perf_counter()
    compiled = f.lower(x).compile()
    compile_s = time.perf_counter() - t
    cost = compiled.cost_analysis()
    flops = float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])
    compiled(x).block_until_ready()
    t = time.perf_counter()
    for _ in range(_REPS.value):
      compiled(x).block_until_ready()
    per_call = (time.perf_counter() - t) / _REPS.value
    print(json.dumps({
        "bench": "grad_microbench", "layer": layer, "side": _SIDE.value,
        "batch": b, "compile_s": round(compile_s, 1),
        "seconds_per_call": round(per_call, 4),
        "gflops_per_sec": round(flops / per_call / 1e9, 1),
        "image_steps_per_sec": round(b / per_call, 1),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "machine": machine.describe()}), flush=True)


if __name__ == "__main__":
  app.run(main)
