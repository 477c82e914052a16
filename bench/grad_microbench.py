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

from absl import app
from absl import flags
import grad_timing  # bench/ (this script's folder is on sys.path)
import machine
from atlasjax import models

_LAYER = flags.DEFINE_string("layer", "mixed4a", "Deepest layer.")
_SIDE = flags.DEFINE_integer("side", 140, "Input side in px.")
_BATCH = flags.DEFINE_list("batch", ["1", "4", "8", "32"], "Batch sizes.")
_REPS = flags.DEFINE_integer("reps", 3, "Timed calls per batch size.")


def main(argv):
  del argv
  model, params = models.load()
  layer = _LAYER.value
  for b in (int(v) for v in _BATCH.value):
    timing = grad_timing.time_grad(model, params, layer, b, _SIDE.value,
                                   _REPS.value)
    per_call = timing.seconds_per_call
    print(json.dumps({
        "bench": "grad_microbench", "layer": layer, "side": _SIDE.value,
        "batch": b, "compile_s": round(timing.compile_s, 1),
        "seconds_per_call": round(per_call, 4),
        "gflops_per_sec": round(timing.gflops_per_sec, 1),
        "image_steps_per_sec": round(b / per_call, 1),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "machine": machine.describe()}), flush=True)


if __name__ == "__main__":
  app.run(main)
