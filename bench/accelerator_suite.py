r"""The renderer on whatever accelerator JAX sees, in one command.

  python bench/accelerator_suite.py                  # GPU/TPU: about 5–10 min
  python bench/accelerator_suite.py --tiny           # CPU smoke run, seconds

For each precision mode (``RenderConfig.precision``: float32, tensorfloat32,
bfloat16) it measures, on ``jax.devices()[0]``:

* ``icons``: atlas icon settings (80 px icons, the full-frame ``atlas``
  transforms, the icon objective on ``mixed4c`` with a whitening matrix) at
  batch 64, 256 and 1024: icons/s for ``--steps`` steps, image-steps/s, and
  icons/s at the atlas default of 1024 steps;
* ``render128``: the default render (128 px, standard transforms, a
  ``mixed4a`` channel) at batch 64: image-steps/s;
* achieved TFLOP/s (XLA's cost analysis of one step × steps / seconds) and
  that as a fraction of the device's peak for the mode (:data:`PEAK_TFLOPS`,
  dense, from the vendors' data sheets; ``null`` for unknown devices);
* peak memory: the device's ``peak_bytes_in_use`` where it reports one, and
  the compiled program's own buffers (``memory_analysis``);
* ``largest_batch``: icons per chunk doubled from 1024 until the program no
  longer fits (or ``--max_batch`` / the time budget is reached).

Timings exclude compilation: each program runs once to warm up, then once
timed. Prints one JSON line per measurement and a summary table. ``--tiny``
shrinks everything (batch 2, 2 steps, ``mixed3a``) so that the
whole path runs on a CPU in the test suite.
"""

import dataclasses
import json
import os
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import grad_timing  # pylint: disable=g-import-not-at-top
import machine
from atlasjax import models
from atlasjax.optvis import render

_TINY = flags.DEFINE_bool("tiny", False, "Tiny sizes: a CPU smoke run.")
_STEPS = flags.DEFINE_integer("steps", 32, "Steps per timed render.")
_PRECISIONS = flags.DEFINE_list("precision", list(render.PRECISIONS), "Modes.")
_ICON_BATCHES = flags.DEFINE_list("icon_batch", ["64", "256", "1024"], "Icon batches.")
_MAX_BATCH = flags.DEFINE_integer("max_batch", 16384, "Largest batch tried.")
_BUDGET = flags.DEFINE_float("budget_s", 540.0, "Stop starting new runs after this.")
_DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA).")

# Dense peak TFLOP/s per precision mode, from the vendors' data sheets
# (float32 = non-tensor-core FP32; tensorfloat32 and bfloat16 = dense tensor
# cores, without sparsity). Matched by substring of ``device.device_kind``,
# first match wins (so more specific names come first).
PEAK_TFLOPS = (
    ("H100 PCIe", {"float32": 51.2, "tensorfloat32": 378.0, "bfloat16": 756.0}),
    ("H100", {"float32": 66.9, "tensorfloat32": 494.7, "bfloat16": 989.4}),
    ("H200", {"float32": 66.9, "tensorfloat32": 494.7, "bfloat16": 989.4}),
    ("GH200", {"float32": 66.9, "tensorfloat32": 494.7, "bfloat16": 989.4}),
    ("A100", {"float32": 19.5, "tensorfloat32": 156.0, "bfloat16": 312.0}),
    ("L40S", {"float32": 91.6, "tensorfloat32": 183.0, "bfloat16": 362.0}),
    ("L4", {"float32": 30.3, "tensorfloat32": 60.0, "bfloat16": 121.0}),
    ("A10", {"float32": 31.2, "tensorfloat32": 62.5, "bfloat16": 125.0}),
    ("V100", {"float32": 15.7, "tensorfloat32": 15.7, "bfloat16": 15.7}),
    ("T4", {"float32": 8.1, "tensorfloat32": 8.1, "bfloat16": 8.1}),
    ("TPU v6", {"float32": 918.0, "tensorfloat32": 918.0, "bfloat16": 918.0}),
    ("TPU v5p", {"float32": 459.0, "tensorfloat32": 459.0, "bfloat16": 459.0}),
    ("TPU v5", {"float32": 197.0, "tensorfloat32": 197.0, "bfloat16": 197.0}),
    ("TPU v4", {"float32": 275.0, "tensorfloat32": 275.0, "bfloat16": 275.0}),
)
ATLAS_DEFAULT_STEPS = 1024
ICON_LAYER, RENDER_LAYER = "mixed4c", "mixed4a"
# Tiny sizes still give views above GoogLeNet's minimum input (31 px).
TINY = {"icon_size": 56, "render_size": 32, "batches": (2,), "render_batch": 2,
        "steps": 2, "layer": "mixed3a", "max_batch": 2}


def peak_tflops(device_kind: str, precision: str):
  for name, peaks in PEAK_TFLOPS:
    if name.lower() in device_kind.lower():
      return peaks[precision]
  return None


def _is_oom(err: Exception) -> bool:
  text = str(err)
  return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "OOM" in text


def measure(model, params, make, args, cfg, flops_per_item, device):
  """Compiles and times one chunk; returns a dict of figures."""
  batch = len(args)
  renderer = render.build(model, make, cfg, devices=(device,))
  ids = jnp.arange(batch, dtype=jnp.int32)
  p = renderer.shard(params, replicate=True)
  a = renderer.shard(args)
  t = time.perf_counter()
  compiled = renderer.lower(p, jax.random.PRNGKey(0), ids, a).compile()
  compile_s = time.perf_counter() - t
  mem = compiled.memory_analysis()
  program_bytes = None if mem is None else int(
      mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes)
  jax.block_until_ready(renderer.run_chunk(p, jax.random.PRNGKey(0), ids, a))
  t = time.perf_counter()
  jax.block_until_ready(renderer.run_chunk(p, jax.random.PRNGKey(1), ids, a))
  seconds = time.perf_counter() - t
  stats = device.memory_stats() or {}
  tflops = flops_per_item * batch * cfg.steps / seconds / 1e12
  peak = peak_tflops(device.device_kind, cfg.precision)
  return {"batch": batch, "steps": cfg.steps, "seconds": round(seconds, 4),
          "compile_s": round(compile_s, 1),
          "icons_per_sec": round(batch / seconds, 3),
          "image_steps_per_sec": round(batch * cfg.steps / seconds, 1),
          "tflops": round(tflops, 4),
          "peak_tflops": peak,
          "fraction_of_peak": None if not peak else round(tflops / peak, 4),
          "peak_bytes_in_use": stats.get("peak_bytes_in_use"),
          "program_bytes": program_bytes}


def main(argv):
  del argv
  start = time.perf_counter()
  tiny = _TINY.value
  device = jax.devices()[0]
  model, params = models.load(data=_DATA.value)
  steps = TINY["steps"] if tiny else _STEPS.value
  icon_size = TINY["icon_size"] if tiny else 80
  icon_layer = TINY["layer"] if tiny else ICON_LAYER
  render_layer = TINY["layer"] if tiny else RENDER_LAYER
  batches = TINY["batches"] if tiny else tuple(int(b) for b in _ICON_BATCHES.value)
  max_batch = TINY["max_batch"] if tiny else _MAX_BATCH.value
  depth = model.layer(icon_layer).depth
  rng = np.random.default_rng(0)
  icon = grad_timing.Icon(icon_layer, grad_timing.synthetic_whitening(depth, rng))
  channel = grad_timing.Channel(render_layer)
  directions = lambda n: jnp.asarray(np.abs(rng.normal(size=(n, depth))), jnp.float32)
  base = {"device": device.device_kind, "platform": device.platform,
          "tiny": tiny, "machine": machine.describe()}
  rows = []

  def emit(row):
    rows.append(row)
    print(json.dumps({**base, **row}), flush=True)

  for precision in _PRECISIONS.value:
    icon_cfg = render.RenderConfig(size=icon_size, steps=steps, transforms="atlas",
                                   precision=precision, attempts=1)
    render_cfg = render.RenderConfig(size=TINY["render_size"] if tiny else 128,
                                     steps=steps, transforms="standard",
                                     precision=precision)
    small = 2
    try:
      render.build(model, icon, icon_cfg, devices=(device,)).lower(
          params, jax.random.PRNGKey(0), jnp.arange(1, dtype=jnp.int32), directions(1))
    except render.RenderError as err:      # e.g. a model that cannot run bf16
      emit({"workload": "all", "precision": precision, "supported": False,
            "error": str(err)})
      continue
    icon_flops = grad_timing.step_flops(render.build(model, icon, dataclasses.replace(
        icon_cfg, chunk_size=small), devices=(device,)), params,
        jnp.arange(small, dtype=jnp.int32), directions(small)) / small
    render_flops = grad_timing.step_flops(render.build(model, channel, dataclasses.replace(
        render_cfg, chunk_size=small), devices=(device,)), params,
        jnp.arange(small, dtype=jnp.int32), jnp.arange(small)) / small
    for b in batches:
      if time.perf_counter() - start > _BUDGET.value:
        break
      cfg = dataclasses.replace(icon_cfg, chunk_size=b)
      try:
        r = measure(model, params, icon, directions(b), cfg, icon_flops, device)
      except Exception as err:   # pylint: disable=broad-except
        if not _is_oom(err):
          raise
        emit({"workload": "icons", "precision": precision, "batch": b, "fits": False})
        break
      r["icons_per_sec_at_1024_steps"] = round(
          r["image_steps_per_sec"] / ATLAS_DEFAULT_STEPS, 3)
      emit({"workload": "icons", "precision": precision, "icon_size": icon_size,
            "layer": icon_layer, **r})
    if time.perf_counter() - start <= _BUDGET.value:
      b = TINY["render_batch"] if tiny else 64
      cfg = dataclasses.replace(render_cfg, chunk_size=b)
      r = measure(model, params, channel, jnp.arange(b) % model.layer(render_layer).depth,
                  cfg, render_flops, device)
      emit({"workload": "render128", "precision": precision,
            "size": render_cfg.size, "layer": render_layer, **r})
    # The largest icon batch that fits: the batches above already ran; double
    # from the largest of them until one does not.
    fitted = [r["batch"] for r in rows if r.get("workload") == "icons"
              and r.get("precision") == precision and "seconds" in r]
    largest = max(fitted) if fitted else None
    b = 2 * largest if largest else min(batches)
    while b <= max_batch and time.perf_counter() - start <= _BUDGET.value:
      try:
        measure(model, params, icon, directions(b),
                dataclasses.replace(icon_cfg, chunk_size=b, steps=1), icon_flops, device)
        largest = b
      except Exception as err:   # pylint: disable=broad-except
        if not _is_oom(err):
          raise
        break
      b *= 2
    emit({"workload": "largest_batch", "precision": precision, "largest_batch": largest,
          "tried_up_to": min(b, max_batch)})
  print("\n| workload | precision | batch | icons/s | image-steps/s | TFLOP/s | "
        "of peak | peak bytes |\n|---|---|---:|---:|---:|---:|---:|---:|")
  for r in rows:
    if r["workload"] == "largest_batch" or "seconds" not in r:
      continue
    print(f"| {r['workload']} | {r['precision']} | {r['batch']} | {r['icons_per_sec']} | "
          f"{r['image_steps_per_sec']} | {r['tflops']} | {r['fraction_of_peak']} | "
          f"{r['peak_bytes_in_use'] or r['program_bytes']} |")
  print(json.dumps({**base, "workload": "summary",
                    "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
  app.run(main)
