r"""What each registered model costs to render, measured side by side.

  python bench/model_render_cost.py                        # GoogLeNet vs EfficientNet-Lite0
  python bench/model_render_cost.py --batch=8 --size=128 --steps=32 --rounds=3
  python bench/model_render_cost.py --cpu_rewrite=true,false   # the xla_cpu rewrite's gain per model

For each model it renders ``--batch`` channel objectives of the model's
default layer (``model.default_layer``: ``mixed4c``, ``block5``) at ``--size``
px with the standard transforms, ``--steps`` steps, compile excluded. Rounds
alternate between the models, so load from other processes on a shared
machine hits all of them alike; the best round is reported, with the median.
One JSON line per model, then one with the ratios to the first model:

  {"workload": "render", "model": "efficientnet_lite0", "layer": "block5",
   "image_steps_per_sec": ..., "median": ..., "compile_s": ...,
   "grad_gflop_per_image": ..., "machine": {...}}
"""

import json
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

import grad_timing  # bench/ (this script's folder is on sys.path)
import machine
from atlasjax import models
from atlasjax.optvis import render

_MODELS = flags.DEFINE_list("models", ["bvlc_googlenet", "efficientnet_lite0"],
                            "Registered model names.")
_BATCH = flags.DEFINE_integer("batch", 8, "Channels rendered together.")
_SIZE = flags.DEFINE_integer("size", 128, "Image side in pixels.")
_STEPS = flags.DEFINE_integer("steps", 32, "Optimisation steps per render.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating timing rounds.")
_CPU_REWRITE = flags.DEFINE_list("cpu_rewrite", ["true"],
                                 "RenderConfig.cpu_rewrite values, each timed per model.")
_DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA).")


def grad_gflop(model, params, size) -> float:
  """XLA's FLOP count of one image's gradient of a channel at the default layer
  (``size`` px, no transforms): the load-independent part of the cost."""
  layer = model.default_layer
  x = jnp.full((1, size, size, 3), 0.5, jnp.float32)
  cost = jax.jit(grad_timing.channel_grad(model, layer)).lower(x, params).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0)) / 1e9


def main(argv):
  del argv
  runs = {}
  for model_name in _MODELS.value:
    model, params = models.load(model_name, _DATA.value)
    family = grad_timing.Channel(model.default_layer)
    args = jnp.arange(_BATCH.value)
    for rewrite in (v.lower() == "true" for v in _CPU_REWRITE.value):
      cfg = render.RenderConfig(size=_SIZE.value, steps=_STEPS.value, cpu_rewrite=rewrite)
      name = model_name if rewrite else f"{model_name}+no_cpu_rewrite"

      def once(seed, model=model, params=params, family=family, args=args, cfg=cfg):
        result = render.render(model, params, family, args=args, config=cfg,
                               key=jax.random.PRNGKey(seed))
        jax.block_until_ready(result.images)

      start = time.perf_counter()
      once(0)  # compiles
      runs[name] = {"once": once, "layer": model.default_layer,
                    "compile_s": time.perf_counter() - start, "times": [],
                    "grad_gflop": grad_gflop(model, params, _SIZE.value)}
  for r in range(_ROUNDS.value):
    for run in runs.values():
      start = time.perf_counter()
      run["once"](r + 1)
      run["times"].append(time.perf_counter() - start)
  work = _BATCH.value * _STEPS.value
  figures = {}
  for name, run in runs.items():
    figures[name] = work / min(run["times"])
    print(json.dumps({
        "workload": "render", "model": name, "layer": run["layer"],
        "batch": _BATCH.value, "size": _SIZE.value, "steps": _STEPS.value,
        "image_steps_per_sec": round(figures[name], 2),
        "median": round(work / statistics.median(run["times"]), 2),
        "compile_s": round(run["compile_s"], 1),
        "grad_gflop_per_image": round(run["grad_gflop"], 3),
        "machine": machine.describe()}),
        flush=True)
  first = next(iter(runs))
  print(json.dumps({"workload": "render_ratio", "relative_to": first,
                    "speed": {n: round(f / figures[first], 3) for n, f in figures.items()},
                    "machine": machine.describe()}), flush=True)


if __name__ == "__main__":
  app.run(main)
