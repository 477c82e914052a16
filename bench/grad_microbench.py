r"""The ceiling for any renderer schedule: a bare jitted gradient, by batch size.

  python bench/grad_microbench.py [--layer=mixed4a --side=140 --batch=1,4,8,32]
  python bench/grad_microbench.py --batch=32 --variants=argument,constant --rounds=5
  XLA_FLAGS=--xla_cpu_experimental_xnn_fusion_type=... python bench/grad_microbench.py

``jax.jit(jax.grad(f))`` of one channel's mean at ``--layer`` with respect to
a ``[batch, side, side, 3]`` input (140 px is what 128 px renders become
after the standard transforms' padding). No parameterization, transforms or
optimizer: it is the convolutions alone. Prints one JSON line per batch and
variant with GFLOP/s (XLA cost analysis) and the implied image-steps/s.

Variants (timed in interleaved ``--rounds``, fastest of each, so that they see
the same load): ``argument`` passes the weights as an argument (as the
renderer does); ``constant`` closes over them, so XLA compiles them in as
constants and may pre-arrange their layout at compile time.
"""

import json
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import grad_timing  # bench/ (this script's folder is on sys.path)
import machine
from atlasjax import data as data_lib
from atlasjax import models
from atlasjax import xla_cpu
from atlasjax.models import weights

_LAYER = flags.DEFINE_string("layer", "mixed4a", "Deepest layer.")
_SIDE = flags.DEFINE_integer("side", 140, "Input side in px.")
_BATCH = flags.DEFINE_list("batch", ["1", "4", "8", "32"], "Batch sizes.")
_REPS = flags.DEFINE_integer("reps", 3, "Timed calls per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Interleaved rounds (fastest kept).")
_VARIANTS = flags.DEFINE_list("variants", ["argument"],
                              "argument, constant, rewritten and/or torch.")
# The PyTorch gradient must match JAX's this closely (relative max error)
# before it is timed: the same network, not merely the same shapes.
TORCH_GRAD_RTOL = 1e-3


def _torch_grad(model, params, layer, b, side):
  """``(run, flops, compile_s)`` of the same gradient in PyTorch (dev-only)."""
  import torch  # pylint: disable=g-import-not-at-top  (dev-only peer)
  from torch_googlenet import GoogLeNet  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  net = GoogLeNet(weights.load_raw(data_lib.googlenet_dir(None)))
  x_np = np.random.default_rng(0).uniform(size=(b, side, side, 3)).astype(np.float32)

  def grad(x_np):
    x = torch.from_numpy(x_np).requires_grad_(True)
    net(x, stop=layer)[:, 0].mean().backward()    # NCHW: channel 0
    return x.grad

  ours = np.asarray(grad_timing.channel_grad(model, layer)(jnp.asarray(x_np), params))
  theirs = grad(x_np).numpy()
  err = float(np.abs(ours - theirs).max() / np.abs(ours).max())
  if err > TORCH_GRAD_RTOL:
    raise SystemExit(f"grad_microbench: the PyTorch gradient differs from JAX's "
                     f"by {err:.2e} (relative max); not timing a different network")
  return lambda: grad(x_np), 0.0, 0.0


def _compile(model, params, layer, b, side, variant):
  if variant == "torch":
    return _torch_grad(model, params, layer, b, side)
  if variant == "argument":
    return grad_timing.compile_grad(model, params, layer, b, side)
  if variant == "rewritten":
    return grad_timing.compile_grad(model, params, layer, b, side,
                                    wrap=xla_cpu.rewrite)
  if variant != "constant":
    raise ValueError(f"unknown variant {variant!r}; use argument, constant, rewritten or torch")
  x = jnp.full((b, side, side, 3), 0.5, jnp.float32)
  grad = grad_timing.channel_grad(model, layer)
  f = jax.jit(lambda x: grad(x, params))
  t = time.perf_counter()
  compiled = f.lower(x).compile()
  compile_s = time.perf_counter() - t
  run = lambda: compiled(x).block_until_ready()
  run()
  return run, grad_timing.flops(compiled), compile_s


def main(argv):
  del argv
  model, params = models.load()
  layer = _LAYER.value
  for b in (int(v) for v in _BATCH.value):
    runs = {v: _compile(model, params, layer, b, _SIDE.value, v) for v in _VARIANTS.value}
    best = {v: float("inf") for v in runs}
    for _ in range(_ROUNDS.value):
      for v, (run, _, _) in runs.items():
        t = time.perf_counter()
        for _ in range(_REPS.value):
          run()
        best[v] = min(best[v], (time.perf_counter() - t) / _REPS.value)
    # PyTorch reports no FLOP count: use XLA's for the same gradient.
    xla_flops = max(f for _, f, _ in runs.values()) or grad_timing.flops(
        jax.jit(grad_timing.channel_grad(model, layer)).lower(
            jnp.zeros((b, _SIDE.value, _SIDE.value, 3)), params).compile())
    for v, (run, n_flops, compile_s) in runs.items():
      n_flops = n_flops or xla_flops
      print(json.dumps({
          "bench": "grad_microbench", "layer": layer, "side": _SIDE.value,
          "batch": b, "variant": v, "compile_s": round(compile_s, 1),
          "seconds_per_call": round(best[v], 4),
          "gflops_per_sec": round(n_flops / best[v] / 1e9, 1),
          "image_steps_per_sec": round(b / best[v], 1),
          "rounds": _ROUNDS.value,
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "machine": machine.describe()}), flush=True)


if __name__ == "__main__":
  app.run(main)
