r"""Depthwise convolutions: the shifted sum against XLA's grouped convolution.

  python bench/depthwise.py [--batch=32] [--rounds=3]

For every depthwise shape of EfficientNet-Lite0 at 224 px (the last unit of
each stage: side, channels, kernel, stride), one JSON line with the seconds
of a jitted forward and of a jitted gradient (input and kernel) for
``efficientnet_lite.depthwise_conv(method="grouped")`` (XLA's
``feature_group_count`` convolution, the peer) and ``method="shifted"``
(the k² shifted slices ``method="auto"`` picks on CPU), fastest of
``--rounds``, and their ratio; then one line with the whole network's
forward at 224 px under each method (``network`` rows). Each line records
the machine and its load.
"""

import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import machine
from atlasjax.models import efficientnet_lite as enet

_BATCH = flags.DEFINE_integer("batch", 32, "Images per call.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed calls; the fastest is kept.")
METHODS = ("grouped", "shifted")


def _fastest(f, *args) -> float:
  jax.block_until_ready(f(*args))   # compile
  times = []
  for _ in range(_ROUNDS.value):
    start = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append(time.perf_counter() - start)
  return min(times)


def _shapes(spec, size):
  """(side, channels, kernel, stride) of each stage's depthwise input."""
  side = -(-size // 2)   # after the stride-2 stem
  for unit in enet.units(spec):
    yield side, unit.hidden, unit.kernel, unit.stride
    side = -(-side // unit.stride)


def main(argv):
  del argv
  n, info = _BATCH.value, machine.describe()
  rng = np.random.default_rng(0)
  for side, channels, kernel, stride in sorted(set(_shapes(enet.EFFICIENTNET_LITE0, 224))):
    x = jnp.asarray(rng.standard_normal((n, side, side, channels)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((kernel, kernel, 1, channels)), jnp.float32)
    line = {"workload": "depthwise", "batch": n, "side": side, "channels": channels,
            "kernel": kernel, "stride": stride}
    for method in METHODS:
      forward = jax.jit(lambda x, w, m=method: enet.depthwise_conv(x, w, stride, m))
      grad = jax.jit(jax.grad(lambda x, w, m=method: (
          enet.depthwise_conv(x, w, stride, m) ** 2).sum(), argnums=(0, 1)))
      line[f"{method}_forward_s"] = round(_fastest(forward, x, w), 4)
      line[f"{method}_grad_s"] = round(_fastest(grad, x, w), 4)
    for kind in ("forward", "grad"):
      line[f"{kind}_speedup"] = round(line[f"grouped_{kind}_s"] / line[f"shifted_{kind}_s"], 2)
    print(json.dumps({**line, "machine": info}), flush=True)
  variables = enet.init(jax.random.key(0), size=224)
  photos = jnp.asarray(rng.random((n, 224, 224, 3)), jnp.float32)
  line = {"workload": "network", "model": "efficientnet_lite0", "batch": n, "side": 224}
  for method in METHODS:
    module = enet.EfficientNetLite(depthwise=method)
    forward = jax.jit(lambda v, x, m=module: m.apply(v, x, layers="head"))
    line[f"{method}_forward_s"] = round(_fastest(forward, variables, photos), 4)
  line["forward_speedup"] = round(line["grouped_forward_s"] / line["shifted_forward_s"], 2)
  print(json.dumps({**line, "machine": info}), flush=True)


if __name__ == "__main__":
  app.run(main)
