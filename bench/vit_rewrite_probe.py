"""Which part of the CPU jaxpr rewrite changes the ViT-Ti render step's speed.

  nice -n 5 python bench/vit_rewrite_probe.py

Renders the same ViT-Ti channel batch (bench/vit_bench.py's model, 112 px,
batch 4, 8 steps, standard transforms) with the render step plain, through
the full ``xla_cpu.rewrite``, through only its convolution rule and through
only its pooling rule (which finds nothing to change in a ViT, so its figure
against the plain one is the measurement's noise floor). A second line does
the same for the bare gradient alone, 4 ascent steps in a ``lax.scan`` at the
renderer's 124 px view side (resampling included) — the network part of the
render step without the transforms, parameterization and Adam. Interleaved
rounds, fastest of each; JSON lines with the machine and its load.
"""
import json
import sys
import time

from absl import flags
import jax
import jax.numpy as jnp

import grad_timing  # bench/ (this script's folder is on sys.path)
import machine
import vit_bench
from atlasjax import xla_cpu
from atlasjax.optvis import render

ROUNDS = 4
BATCH, STEPS, SIZE = 4, 8, 112
LAYER = "block5/fc2:input"


SCAN_STEPS = 4
VIEW_SIDE = 124


def bare_scan_line(model, params):
  """The rewrite variants on ``lax.scan`` of the bare gradient ascent."""
  grad = grad_timing.channel_grad(model, LAYER)
  x0 = jnp.full((BATCH, VIEW_SIDE, VIEW_SIDE, 3), 0.5)

  def looped(wrap):
    step = wrap(lambda x, p: x + 1e-3 * grad(x, p))
    return jax.jit(lambda x, p: jax.lax.scan(
        lambda c, _: (step(c, p), None), x, None, length=SCAN_STEPS)[0])

  fns = {"plain": looped(lambda f: f), "full": looped(xla_cpu.rewrite),
         "conv_only": looped(xla_cpu.canonical_convolutions),
         "pool_only": looped(xla_cpu.fast_pool_gradients)}
  for fn in fns.values():
    jax.block_until_ready(fn(x0, params))
  best = {name: float("inf") for name in fns}
  for _ in range(ROUNDS + 1):
    for name, fn in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(fn(x0, params))
      best[name] = min(best[name], time.perf_counter() - t)
  return {"workload": "rewrite_probe_bare_scan", "model": model.name, "batch": BATCH,
          "steps": SCAN_STEPS, "rounds": ROUNDS + 1,
          "image_steps_per_sec": {n: round(BATCH * SCAN_STEPS / s, 2)
                                  for n, s in best.items()},
          "machine": machine.describe()}


def main():
  flags.FLAGS(sys.argv[:1])
  model, params, _ = vit_bench.build("ti", SIZE)
  family = grad_timing.Channel(LAYER)
  args, key = jnp.arange(BATCH), jax.random.PRNGKey(0)
  full = xla_cpu.rewrite
  variants = {"plain": (False, full), "full": (True, full),
              "conv_only": (True, xla_cpu.canonical_convolutions),
              "pool_only": (True, xla_cpu.fast_pool_gradients)}
  configs = {}
  for i, (name, (on, fn)) in enumerate(variants.items()):
    # A distinct lr per variant: distinct renderer cache keys (the value is
    # irrelevant to the timing). loop_body looks xla_cpu.rewrite up at build.
    cfg = render.RenderConfig(size=SIZE, steps=STEPS, transforms="standard",
                              chunk_size=BATCH, cpu_rewrite=on, lr=0.05 + 1e-6 * i)
    xla_cpu.rewrite = fn
    jax.block_until_ready(render.render(model, params, family, args, cfg, key).images)
    configs[name] = cfg
  xla_cpu.rewrite = full
  best = {name: float("inf") for name in configs}
  for r in range(ROUNDS):
    for name, cfg in configs.items():
      t = time.perf_counter()
      jax.block_until_ready(
          render.render(model, params, family, args + BATCH * (r + 1), cfg, key).images)
      best[name] = min(best[name], time.perf_counter() - t)
  print(json.dumps({"workload": "rewrite_probe", "model": model.name, "batch": BATCH,
                    "steps": STEPS, "rounds": ROUNDS,
                    "image_steps_per_sec": {n: round(BATCH * STEPS / s, 2)
                                            for n, s in best.items()},
                    "machine": machine.describe()}), flush=True)
  print(json.dumps(bare_scan_line(model, params)), flush=True)


if __name__ == "__main__":
  main()
