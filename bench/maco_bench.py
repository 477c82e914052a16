r"""MaCo: its spectrum against Xplique's, and its cost per step against fft.

  python bench/maco_bench.py --workload=spectrum \
      --xplique_spectrum=/tmp/xplique/xplique/features_visualizations/spectrum_decorrelated.npy
  python bench/maco_bench.py --workload=cost --size=128 --batch=4 --steps=16 --rounds=3

``spectrum``: our default magnitude (the sample photos) and the ImageNet one
Xplique ships in its wheel (``pip download xplique --no-deps``): radial
log-log slope of each, and the correlation of their log magnitudes once both
are resized to ``--size`` (all coefficients, and per channel).

``cost``: full GoogLeNet renders (``channel(--layer)``, standard transforms,
``--batch`` items, ``--steps`` steps, compile excluded) with ``param=fft``
and ``param=maco`` (and maco with MaCo's crops preset), timed in interleaved
``--rounds`` (fastest of each), reported as seconds per step and the ratio to
fft; plus the parameterization alone (``to_rgb`` and its gradient).
Every line carries ``machine`` (with the 1-minute load average).
"""

import dataclasses
import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import grad_timing  # bench/ (this script's folder is on sys.path)
import machine
from atlasjax import models
from atlasjax.optvis import param as param_lib
from atlasjax.optvis import render
from atlasjax.optvis import spectrum

_WORKLOAD = flags.DEFINE_enum("workload", "cost", ["spectrum", "cost"], "What to measure.")
_XPLIQUE = flags.DEFINE_string("xplique_spectrum", None,
                               "Xplique's spectrum_decorrelated.npy (for --workload=spectrum).")
_SIZE = flags.DEFINE_integer("size", 128, "Image side.")
_BATCH = flags.DEFINE_integer("batch", 4, "Items per render.")
_STEPS = flags.DEFINE_integer("steps", 16, "Steps per timed render.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds.")
_LAYER = flags.DEFINE_string("layer", "mixed4a", "Layer of the channel objectives.")
_VARIANTS = (("fft", "standard"), ("maco", "standard"), ("maco", "maco"))


def spectrum_report(xplique_path: str, size: int) -> dict:
  ours = spectrum.default_magnitude(spectrum.ESTIMATE_SIZE)
  theirs = np.load(xplique_path).astype(np.float32)
  a = np.log(spectrum.resize(ours, size))
  b = np.log(spectrum.resize(theirs, size))
  return {
      "workload": "spectrum", "size": size,
      "ours_shape": list(ours.shape), "xplique_shape": list(theirs.shape),
      "ours_loglog_slope": spectrum.loglog_slope(ours),
      "xplique_loglog_slope": spectrum.loglog_slope(theirs),
      "ours_slope_per_channel": [spectrum.loglog_slope(ours[c:c + 1]) for c in range(3)],
      "xplique_slope_per_channel": [spectrum.loglog_slope(theirs[c:c + 1])
                                    for c in range(3)],
      "log_magnitude_correlation": float(np.corrcoef(a.ravel(), b.ravel())[0, 1]),
      "log_magnitude_correlation_per_channel": [
          float(np.corrcoef(a[c].ravel(), b[c].ravel())[0, 1]) for c in range(3)],
      "machine": machine.describe()}


def _renderer(model, params, kind, transforms, size, batch, steps, layer):
  config = render.RenderConfig(size=size, steps=steps, param=kind,
                               transforms=transforms, chunk_size=batch)
  r = render.build(model, grad_timing.Channel(layer), config)
  ids = r.shard(jnp.arange(batch, dtype=jnp.int32))
  p = r.shard(params, replicate=True)
  run = lambda key: jax.block_until_ready(r.run_chunk(p, key, ids, ids))
  t0 = time.perf_counter()
  run(jax.random.PRNGKey(0))
  return run, time.perf_counter() - t0


def _param_cost(kind, size, batch, reps=20) -> float:
  p = param_lib.image(size, 1, kind)
  raw = jax.vmap(p.init)(jax.random.split(jax.random.PRNGKey(0), batch))
  grad = jax.jit(jax.grad(lambda r: jnp.sum(jax.vmap(p.to_rgb)(r) ** 2)))
  jax.block_until_ready(grad(raw))
  best = float("inf")
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(grad(raw))
    best = min(best, time.perf_counter() - t0)
  return best


def cost_report(size, batch, steps, rounds, layer) -> list[dict]:
  model, params = models.load("bvlc_googlenet")
  runs, compile_s = {}, {}
  for kind, transforms in _VARIANTS:
    runs[kind, transforms], compile_s[kind, transforms] = _renderer(
        model, params, kind, transforms, size, batch, steps, layer)
  best = {v: float("inf") for v in _VARIANTS}
  for r in range(rounds):
    for v in _VARIANTS:
      t0 = time.perf_counter()
      runs[v](jax.random.PRNGKey(r + 1))
      best[v] = min(best[v], time.perf_counter() - t0)
  base = best["fft", "standard"]
  out = []
  for (kind, transforms), seconds in best.items():
    out.append({
        "workload": "render_cost", "param": kind, "transforms": transforms,
        "size": size, "batch": batch, "steps": steps, "layer": layer,
        "seconds_per_step": seconds / steps, "vs_fft": seconds / base,
        "compile_s": compile_s[kind, transforms], "rounds": rounds,
        "machine": machine.describe()})
  fft_param = _param_cost("fft", size, batch)
  maco_param = _param_cost("maco", size, batch)
  out.append({"workload": "param_cost", "size": size, "batch": batch,
              "fft_to_rgb_grad_s": fft_param, "maco_to_rgb_grad_s": maco_param,
              "maco_vs_fft": maco_param / fft_param,
              "maco_param_share_of_fft_step": (maco_param - fft_param) / (base / steps),
              "machine": machine.describe()})
  return out


def main(argv):
  del argv
  if _WORKLOAD.value == "spectrum":
    if not _XPLIQUE.value:
      raise app.UsageError("--workload=spectrum needs --xplique_spectrum=PATH")
    print(json.dumps(spectrum_report(_XPLIQUE.value, _SIZE.value)), flush=True)
    return
  for line in cost_report(_SIZE.value, _BATCH.value, _STEPS.value, _ROUNDS.value,
                          _LAYER.value):
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
  app.run(main)
