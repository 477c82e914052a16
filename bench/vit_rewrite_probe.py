r"""The CPU jaxpr rewrite on ViTs and GoogLeNet, on and off, in one run.

  nice -n 10 python bench/vit_rewrite_probe.py               # ViT-Ti, ViT-S, GoogLeNet
  python bench/vit_rewrite_probe.py --probe_models=ti --rounds=4

For each model (``ti``/``s``: bench/vit_bench.py's random linen ViTs at
112 px through ``from_flax``; ``bvlc_googlenet``: the real network), three
variants of the program:

* ``off``: no rewrite (``RenderConfig(cpu_rewrite=False)``; plain ``jit``);
* ``on``: ``xla_cpu.rewrite`` as it is now (patchify input gradients left as
  written, :func:`atlasjax.xla_cpu.is_patchify_transpose`);
* ``on_patchify_too``: the rewrite as it was before, which also put the
  patch embedding's input gradient in XLA:CPU's canonical layout
  (``is_patchify_transpose`` patched to ``False`` while the variant traces).

Two JSON lines per model: ``bare_scan``, the bare gradient ascent (4 steps in
a ``lax.scan`` at the renderer's 124 px view side, resampling included: the
network part of the render step, the steadiest figure on a shared machine),
and ``render``, the renderer (batch 4, 8 steps, standard transforms, a channel
of ``block5/fc2:input`` for a ViT, of ``mixed4c`` for GoogLeNet). Interleaved
rounds, fastest and median of each; each line has the ratios to ``off``, the
machine and its 1-minute load average. The ``bare_scan`` line also compares
the variants' optimised XLA programs (opcode counts): a load-independent
check that the rewrite now leaves a ViT's program as it was and changes
nothing for GoogLeNet.
"""
import collections
import contextlib
import json
import re
import statistics
import sys
import time

from absl import flags
import jax
import jax.numpy as jnp

import grad_timing  # bench/ (this script's folder is on sys.path)
import machine
import vit_bench
from atlasjax import models
from atlasjax import xla_cpu
from atlasjax.optvis import render

_PROBE_MODELS = flags.DEFINE_list("probe_models", ["ti", "s", "bvlc_googlenet"],
                                  "ViT sizes of bench/vit_bench.py and registered models.")
_PROBE_ROUNDS = flags.DEFINE_integer("probe_rounds", 6, "Interleaved timing rounds.")

BATCH, STEPS, SIZE = 4, 8, 112
VIT_LAYER = "block5/fc2:input"
SCAN_STEPS = 4
VIEW_SIDE = 124
VARIANTS = ("off", "on", "on_patchify_too")
# An instruction's opcode in XLA's HLO text: "%name = f32[...] opcode(".
_HLO_OP = re.compile(r"=\s*\S+\s+([a-z][a-z0-9-]*)\(")


@contextlib.contextmanager
def _tracing_as(variant):
  """While ``variant`` traces: the rewrite with or without the patchify exemption."""
  exempt = xla_cpu.is_patchify_transpose
  if variant == "on_patchify_too":
    xla_cpu.is_patchify_transpose = lambda eqn: False
  try:
    yield
  finally:
    xla_cpu.is_patchify_transpose = exempt


def _time_rounds(calls, rounds) -> dict:
  """Wall times of each call over interleaved rounds."""
  times = {name: [] for name in calls}
  for r in range(rounds):
    for name, call in calls.items():
      t = time.perf_counter()
      jax.block_until_ready(call(r))
      times[name].append(time.perf_counter() - t)
  return times


def _line(workload, model, layer, steps, times, rounds):
  """Fastest (and median) of each variant, and the ratios to ``off``."""
  best = {n: min(t) for n, t in times.items()}
  median = {n: statistics.median(t) for n, t in times.items()}
  return {"workload": workload, "model": model.name, "layer": layer, "batch": BATCH,
          "steps": steps, "rounds": rounds,
          "image_steps_per_sec": {n: round(BATCH * steps / s, 2) for n, s in best.items()},
          "median_image_steps_per_sec": {n: round(BATCH * steps / s, 2)
                                         for n, s in median.items()},
          "vs_off": {n: round(best["off"] / s, 3) for n, s in best.items()},
          "median_vs_off": {n: round(median["off"] / s, 3) for n, s in median.items()},
          "machine": machine.describe()}


def _hlo_ops(compiled) -> collections.Counter:
  """Opcode counts of XLA's optimised program (load-independent structure)."""
  return collections.Counter(_HLO_OP.findall(compiled.as_text()))


def _op_difference(a, b) -> dict:
  """``{opcode: count in a - count in b}``, nonzero entries only."""
  return {op: a[op] - b[op] for op in sorted(set(a) | set(b)) if a[op] != b[op]}


def bare_scan_line(model, params, layer, rounds):
  """The variants on ``lax.scan`` of the bare gradient ascent."""
  grad = grad_timing.channel_grad(model, layer)
  x0 = jnp.full((BATCH, VIEW_SIDE, VIEW_SIDE, 3), 0.5)
  wraps = {"off": lambda f: f, "on": xla_cpu.rewrite, "on_patchify_too": xla_cpu.rewrite}
  calls, ops = {}, {}
  for variant, wrap in wraps.items():
    step = wrap(lambda x, p: x + 1e-3 * grad(x, p))
    fn = jax.jit(lambda x, p, step=step: jax.lax.scan(
        lambda c, _: (step(c, p), None), x, None, length=SCAN_STEPS)[0])
    with _tracing_as(variant):
      compiled = fn.lower(x0, params).compile()
    ops[variant] = _hlo_ops(compiled)
    calls[variant] = lambda r, compiled=compiled: compiled(x0, params)
  for call in calls.values():
    jax.block_until_ready(call(0))
  line = _line("rewrite_probe_bare_scan", model, layer, SCAN_STEPS,
               _time_rounds(calls, rounds), rounds)
  line["hlo_ops"] = sum(ops["off"].values())
  line["hlo_op_difference_vs_off"] = {v: _op_difference(ops[v], ops["off"]) for v in ops}
  line["hlo_op_difference_on_vs_on_patchify_too"] = _op_difference(
      ops["on"], ops["on_patchify_too"])
  return line


def render_line(model, params, layer, rounds):
  """The variants on the whole renderer."""
  family = grad_timing.Channel(layer)
  args, key = jnp.arange(BATCH), jax.random.PRNGKey(0)
  calls = {}
  for i, variant in enumerate(VARIANTS):
    # A distinct lr per variant: distinct renderer cache keys (the value is
    # irrelevant to the timing); the first call traces and compiles.
    cfg = render.RenderConfig(size=SIZE, steps=STEPS, transforms="standard",
                              chunk_size=BATCH, cpu_rewrite=variant != "off",
                              lr=0.05 + 1e-6 * i)
    with _tracing_as(variant):
      jax.block_until_ready(render.render(model, params, family, args, cfg, key).images)
    calls[variant] = lambda r, cfg=cfg: render.render(
        model, params, family, args + BATCH * (r + 1), cfg, key).images
  return _line("rewrite_probe_render", model, layer, STEPS,
               _time_rounds(calls, rounds), rounds)


def _model(name):
  if name in vit_bench.SIZES:
    model, params, _ = vit_bench.build(name, SIZE)
    return model, params, VIT_LAYER
  model, params = models.load(name)
  return model, params, model.default_layer


def main():
  flags.FLAGS(sys.argv)
  rounds = _PROBE_ROUNDS.value
  for name in _PROBE_MODELS.value:
    model, params, layer = _model(name)
    print(json.dumps(bare_scan_line(model, params, layer, rounds)), flush=True)
    print(json.dumps(render_line(model, params, layer, rounds)), flush=True)


if __name__ == "__main__":
  main()
