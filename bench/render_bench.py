r"""Renderer throughput: batched scan+vmap renderer vs a Lucid-style loop.

  python bench/render_bench.py                       # batch 1/8/32/128 × 80/128 px
  python bench/render_bench.py --batch=32 --size=128 --steps=64 --layer=mixed4a

Prints one JSON line per configuration:
  batch, size, steps, layer, icons_per_sec, image_steps_per_sec (batch × steps /
  seconds, compile excluded), gflops_per_sec (XLA cost-analysis FLOPs of one
  optimisation step × steps / seconds), compile_s, microbench_gflops_per_sec
  (a bare ``jax.jit(jax.grad(...))`` of the same network on the same batch at the
  transformed size), gflops_vs_microbench, bare_grad_image_steps_per_sec and
  vs_bare_grad (the renderer's image-steps/s over the bare gradient's, timed in
  interleaved ``--rounds``, fastest of each), rewritten_bare_grad_image_steps_per_sec
  and vs_rewritten_bare_grad (the same bare gradient through
  ``atlasjax.xla_cpu.rewrite``, as the renderer's CPU step runs it: the
  renderer's own gradient without the rendering around it), loop_image_steps_per_sec (one
  objective at a time, a jitted step per Python iteration, as Lucid and Lucent
  do), speedup_vs_loop, machine.
"""

import dataclasses
import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

import grad_timing  # bench/ (this script's folder is on sys.path)
import machine
from atlasjax import models
from atlasjax import xla_cpu
from atlasjax.optvis import render

_BATCH = flags.DEFINE_list("batch", ["1", "8", "32", "128"], "Batch sizes.")
_SIZE = flags.DEFINE_list("size", ["80", "128"], "Image sizes.")
_STEPS = flags.DEFINE_integer("steps", 64, "Steps per render.")
_LAYER = flags.DEFINE_string("layer", "mixed4c", "Layer of the channel objectives.")
_TRANSFORMS = flags.DEFINE_string("transforms", "standard", "Transforms preset.")
_UNROLL = flags.DEFINE_integer("unroll", 1, "lax.scan unroll factor.")
_LOOP = flags.DEFINE_enum("loop", "scan", ["scan", "host"], "RenderConfig.loop.")
_LOOP_STEPS = flags.DEFINE_integer("loop_steps", 16, "Steps timed for the one-at-a-time loop (0 = skip).")
_CHUNK = flags.DEFINE_integer("chunk", 0, "Items per compiled chunk (0 = the whole batch).")
_MICRO_REPS = flags.DEFINE_integer("micro_reps", 3, "Repetitions of the microbenchmark.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved renderer / bare-gradient rounds.")
_DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA).")


def loop_rate(renderer, params, steps) -> float:
  """Image-steps/s of one objective at a time with a jitted step per iteration."""
  ids = jnp.zeros((1,), jnp.int32)
  raw, opt, args, keys = jax.jit(renderer.init)(jax.random.PRNGKey(0), ids, ids)
  step = jax.jit(renderer.step)
  raw, opt, _ = step(raw, opt, args, keys, jnp.int32(0), params)   # compile
  jax.block_until_ready(raw)
  t = time.perf_counter()
  for i in range(steps):
    raw, opt, loss = step(raw, opt, args, keys, jnp.int32(i), params)
    float(loss[0])          # Lucid/Lucent read the loss back every step
  return steps / (time.perf_counter() - t)


def transformed_side(renderer, size) -> int:
  img = jnp.zeros((size, size, 3))
  return jax.eval_shape(renderer.transform, jax.random.PRNGKey(0), img).shape[0]


def run(model, params, batch, size, steps, layer):
  chunk = min(_CHUNK.value or batch, batch)
  cfg = render.RenderConfig(size=size, steps=steps, transforms=_TRANSFORMS.value,
                            chunk_size=chunk, unroll=_UNROLL.value, loop=_LOOP.value)
  family = grad_timing.Channel(layer)
  renderer = render.build(model, family, cfg)
  ids = jnp.arange(chunk, dtype=jnp.int32)
  key = jax.random.PRNGKey(0)
  rparams = renderer.shard(params, replicate=True)
  t = time.perf_counter()
  compiled = renderer.lower(rparams, key, ids, ids).compile()
  compile_s = time.perf_counter() - t
  args = jnp.arange(batch)
  jax.block_until_ready(render.render(model, params, family, args, cfg, key).values)  # warm
  side = transformed_side(renderer, size)
  bare, bare_flops, _ = grad_timing.compile_grad(model, params, layer, batch, side)
  rewritten, _, _ = grad_timing.compile_grad(model, params, layer, batch, side,
                                             wrap=xla_cpu.rewrite)
  # Interleaved rounds, fastest of each: on a shared machine the minimum is
  # the figure least disturbed by other processes, and both sides see the
  # same disturbances.
  seconds, bare_s, rewritten_s = float("inf"), float("inf"), float("inf")
  for r in range(_ROUNDS.value):
    t = time.perf_counter()
    jax.block_until_ready(
        render.render(model, params, family, args + (r + 1) * batch, cfg, key).values)
    seconds = min(seconds, time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(_MICRO_REPS.value):
      bare()
    bare_s = min(bare_s, (time.perf_counter() - t) / _MICRO_REPS.value)
    t = time.perf_counter()
    for _ in range(_MICRO_REPS.value):
      rewritten()
    rewritten_s = min(rewritten_s, (time.perf_counter() - t) / _MICRO_REPS.value)
  flops = grad_timing.step_flops(renderer, rparams, ids, ids) * steps * (-(-batch // chunk))
  micro = bare_flops / bare_s / 1e9
  loop = (loop_rate(render.build(model, family, dataclasses.replace(cfg, chunk_size=1)),
                    params, _LOOP_STEPS.value) if _LOOP_STEPS.value else float("nan"))
  rate = batch * steps / seconds
  gflops = flops / seconds / 1e9
  return {
      "batch": batch, "size": size, "steps": steps, "layer": layer,
      "icons_per_sec": round(batch / seconds, 3),
      "image_steps_per_sec": round(rate, 2),
      "gflops_per_sec": round(gflops, 2),
      "compile_s": round(compile_s, 1),
      "microbench_gflops_per_sec": round(micro, 2),
      "gflops_vs_microbench": round(gflops / micro, 3),
      "bare_grad_image_steps_per_sec": round(batch / bare_s, 2),
      "vs_bare_grad": round(rate / (batch / bare_s), 3),
      "rewritten_bare_grad_image_steps_per_sec": round(batch / rewritten_s, 2),
      "vs_rewritten_bare_grad": round(rate / (batch / rewritten_s), 3),
      "view_side": side, "transforms": _TRANSFORMS.value, "rounds": _ROUNDS.value,
      "loop_image_steps_per_sec": round(loop, 2),
      "speedup_vs_loop": round(rate / loop, 2),
      "unroll": _UNROLL.value, "loop": _LOOP.value, "chunk": chunk,
      "machine": machine.describe(),
  }


def main(argv):
  del argv
  model, params = models.load(data=_DATA.value)
  for size in map(int, _SIZE.value):
    for batch in map(int, _BATCH.value):
      print(json.dumps(run(model, params, batch, size, _STEPS.value, _LAYER.value)),
            flush=True)


if __name__ == "__main__":
  app.run(main)
