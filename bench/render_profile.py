r"""Where one render step's time goes: a table of its parts.

  python bench/render_profile.py                     # default render and atlas icons
  python bench/render_profile.py --workload=default --batch=32 --size=128 --layer=mixed4a

Method: **separately compiled pieces, timed** (not a parsed trace). One
optimisation step of ``render.Renderer.step`` is cut into the pieces below;
each is compiled on its own with exactly the shapes the step uses (the whole
batch, vmapped as the renderer does) and timed, interleaved with the others
over ``--rounds`` rounds; each piece's figure is its fastest round, which is
the least disturbed by other processes on a shared machine:

  parameterization  ``to_rgb`` forward (FFT, colour, sigmoid)
  param. backward   its VJP (forward + backward − forward)
  transforms        forward of the random transforms (one resampling)
  transf. backward  their VJP (forward + backward − forward)
  network forward   ``model.apply`` to the objective's layer (+ objective)
  network backward  ``jax.grad`` of the objective w.r.t. the network input
                    minus the forward: this pair is the *bare gradient*
  optimizer         Adam's update and ``apply_updates`` on the raw params
  whole step        the renderer's own step, compiled as one program

``rest`` = whole step − the sum of the parts: negative when XLA fuses across
the cuts (e.g. transforms into the first convolution), positive for what no
piece covers (key splitting, the loss bookkeeping). Prints one JSON line per
piece and a Markdown table. XLA's cost-analysis FLOPs are given per piece.

Second table, **XLA's own profile of the renderer's real program** (the
chunk program as ``render`` runs it: steps in ``lax.scan``, on CPU after
``atlasjax.xla_cpu.rewrite``), ``--trace_steps`` steps under
``jax.profiler.trace`` (``bench/xla_ops.py``): every HLO instruction's time,
grouped by the renderer's named scopes in its metadata (parameterization,
transforms, network, objective, optimizer; ``transpose(...)`` in the name
stack = backward), per step; "outside the loop" is init and final scoring.
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
import optax

sys.path.insert(0, os.path.dirname(__file__))
import grad_timing  # pylint: disable=g-import-not-at-top
import machine
import xla_ops
from atlasjax import models
from atlasjax.optvis import objectives
from atlasjax.optvis import render

_WORKLOAD = flags.DEFINE_list("workload", ["default", "atlas"],
                              "default (channel, standard transforms) and/or atlas "
                              "(icon objective, atlas transforms).")
_BATCH = flags.DEFINE_integer("batch", 32, "Images per step.")
_SIZE = flags.DEFINE_integer("size", 0, "Image side (0: 128 default, 80 atlas).")
_LAYER = flags.DEFINE_string("layer", "", "Layer (default mixed4a / mixed4c).")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved timing rounds.")
_TRACE_STEPS = flags.DEFINE_integer("trace_steps", 8, "Steps of the traced render (0 = no trace).")
_DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA).")

def workload(name, model, batch):
  """``(config, make, args)`` of one workload."""
  if name == "default":
    layer = _LAYER.value or "mixed4a"
    cfg = render.RenderConfig(size=_SIZE.value or 128, transforms="standard",
                              chunk_size=batch)
    return cfg, grad_timing.Channel(layer), jnp.arange(batch) % model.layer(layer).depth
  if name == "atlas":
    layer = _LAYER.value or "mixed4c"
    depth = model.layer(layer).depth
    rng = np.random.default_rng(0)
    whitening = grad_timing.synthetic_whitening(depth, rng)
    cfg = render.RenderConfig(size=_SIZE.value or 80, transforms="atlas",
                              chunk_size=batch)
    directions = jnp.asarray(np.abs(rng.normal(size=(batch, depth))), jnp.float32)
    return cfg, grad_timing.Icon(layer, whitening), directions
  raise ValueError(f"unknown workload {name!r}; choose default or atlas")


def pieces(renderer, params, raw, opt_state, args, keys):
  """``{name: (jitted fn, operands)}`` for every piece of one step."""
  to_rgb = jax.vmap(renderer.param.to_rgb)
  images = to_rgb(raw)                                   # [N, B, H, W, C]
  n, b = images.shape[:2]
  flat = images.reshape((n * b,) + images.shape[2:])
  tkeys = jax.random.split(keys[0], n * b)
  transform = jax.vmap(renderer.transform)
  x = transform(tkeys, flat)

  def objective_of(x, args, p):
    # As the renderer runs it: one network call on the flat batch, then the
    # objective per item.
    obj = renderer.make(jax.tree_util.tree_map(lambda a: a[0], args))
    acts = renderer._activations(p, obj, x, None)   # pylint: disable=protected-access
    acts = {k: v.reshape((n, b) + v.shape[1:]) for k, v in acts.items()}
    xs = x.reshape((n, b) + x.shape[1:])
    def one(arg, acts, xi):
      acts = dict(acts)
      acts[objectives.INPUT] = xi
      return renderer.make(arg)(acts)
    return jnp.sum(jax.vmap(one)(args, acts, xs))

  def vjp_of(f, *primals):
    out, back = jax.vjp(f, *primals)
    return back(jnp.ones_like(out))

  grads = jax.tree_util.tree_map(jnp.ones_like, raw)
  update = jax.vmap(renderer.optimizer.update)

  def adam(g, s, p):
    u, s = update(g, s, p)
    return optax.apply_updates(p, u), s

  step = lambda r, o, a, k, p: renderer.step(r, o, a, k, jnp.int32(0), p)
  return {
      "parameterization": (to_rgb, (raw,)),
      "param. fwd+bwd": (lambda r: vjp_of(to_rgb, r), (raw,)),
      "transforms": (lambda f: transform(tkeys, f), (flat,)),
      "transf. fwd+bwd": (lambda f: vjp_of(lambda f: transform(tkeys, f), f), (flat,)),
      "network forward": (objective_of, (x, args, params)),
      "network fwd+bwd": (jax.grad(objective_of), (x, args, params)),
      "optimizer": (adam, (grads, opt_state, raw)),
      "whole step": (step, (raw, opt_state, args, keys, params)),
  }


def profile(name, model, params):
  batch = _BATCH.value
  cfg, make, args = workload(name, model, batch)
  renderer = render.build(model, make, cfg)
  ids = jnp.arange(batch, dtype=jnp.int32)
  raw, opt_state, args, keys = jax.jit(renderer.init)(jax.random.PRNGKey(0), ids, args)
  compiled = {}
  for piece, (fn, operands) in pieces(renderer, params, raw, opt_state, args,
                                      keys).items():
    c = jax.jit(fn).lower(*operands).compile()
    jax.block_until_ready(c(*operands))
    compiled[piece] = (c, operands, grad_timing.flops(c))
  best = {p: float("inf") for p in compiled}
  for _ in range(_ROUNDS.value):
    for piece, (c, operands, _) in compiled.items():
      t = time.perf_counter()
      jax.block_until_ready(c(*operands))
      best[piece] = min(best[piece], time.perf_counter() - t)
  ms = {p: 1e3 * s for p, s in best.items()}
  parts = {
      "parameterization": ms["parameterization"],
      "param. backward": ms["param. fwd+bwd"] - ms["parameterization"],
      "transforms": ms["transforms"],
      "transf. backward": ms["transf. fwd+bwd"] - ms["transforms"],
      "network forward": ms["network forward"],
      "network backward": ms["network fwd+bwd"] - ms["network forward"],
      "optimizer": ms["optimizer"],
  }
  parts["rest"] = ms["whole step"] - sum(parts.values())
  parts["whole step"] = ms["whole step"]
  view = jax.eval_shape(renderer.transform, jax.random.PRNGKey(0),
                        jax.ShapeDtypeStruct((cfg.size, cfg.size, 3), jnp.float32))
  meta = {"workload": name, "batch": batch, "size": cfg.size,
          "view": view.shape[0], "transforms": cfg.transforms,
          "layer": getattr(make, "layer", ""), "rounds": _ROUNDS.value,
          "method": "separately compiled pieces, fastest of interleaved rounds",
          "machine": machine.describe()}
  flops = {"network forward": compiled["network forward"][2],
           "network backward": compiled["network fwd+bwd"][2]
           - compiled["network forward"][2],
           "whole step": compiled["whole step"][2]}
  for part, v in parts.items():
    print(json.dumps({**meta, "part": part, "ms": round(v, 2),
                      "share": round(v / ms["whole step"], 3),
                      "gflop": round(flops.get(part, 0.0) / 1e9, 3)}), flush=True)
  bare = parts["network forward"] + parts["network backward"]
  print(f"\n{name}: batch {batch}, {cfg.size} px → {view.shape[0]} px view, "
        f"{meta['layer']}, load {meta['machine'].get('load_avg_1m')}\n")
  print("| part | ms / step | share |\n|---|---:|---:|")
  for part, v in parts.items():
    print(f"| {part} | {v:.1f} | {v / ms['whole step']:.1%} |")
  print(f"\nbare gradient (network forward + backward) / whole step = "
        f"{bare / ms['whole step']:.2f}\n", flush=True)


SCOPES = ("parameterization", "transforms", "network", "objective", "optimizer")


def scope_of(op: xla_ops.Op) -> str:
  """The renderer part an HLO instruction belongs to, from its name stack."""
  if "while/body" not in op.op_name:
    return "outside the loop (init, scoring)"
  part = next((p for p in SCOPES if p in op.op_name), "other (loop, keys, glue)")
  if part in ("parameterization", "transforms", "network", "objective"):
    part += " backward" if "transpose(" in op.op_name else " forward"
  return part


def trace_profile(name, model, params):
  """XLA's per-instruction profile of one chunk program, grouped by part."""
  batch = _BATCH.value
  cfg, make, args = workload(name, model, batch)
  cfg = dataclasses.replace(cfg, steps=_TRACE_STEPS.value)
  renderer = render.build(model, make, cfg)
  ids = jnp.arange(batch, dtype=jnp.int32)
  key = jax.random.PRNGKey(0)
  compiled = renderer.lower(params, key, ids, args).compile()
  ops, wall = xla_ops.op_times(compiled, (params, key, ids, args, jnp.int32(0)))
  parts = {}
  for op in ops:
    part = scope_of(op)
    parts[part] = parts.get(part, 0.0) + op.ms
  total = sum(parts.values())
  steps = cfg.steps
  meta = {"workload": name, "batch": batch, "size": cfg.size, "steps": steps,
          "layer": getattr(make, "layer", ""), "wall_ms_per_step": round(1e3 * wall / steps, 1),
          "method": "jax.profiler trace of the chunk program, HLO instructions by named scope",
          "machine": machine.describe()}
  print(f"\n{name}, XLA's own profile: batch {batch}, {cfg.size} px, {steps} steps, "
        f"{meta['wall_ms_per_step']} ms wall per step (incl. init/scoring), "
        f"load {meta['machine'].get('load_avg_1m')}\n")
  print("| part | ms / step (summed over instructions) | share |\n|---|---:|---:|")
  for part, ms in sorted(parts.items(), key=lambda kv: -kv[1]):
    print(json.dumps({**meta, "part": part, "ms_per_step": round(ms / steps, 2),
                      "share": round(ms / total, 3)}), flush=True)
    print(f"| {part} | {ms / steps:.1f} | {ms / total:.1%} |")
  print("\nTop instructions:\n\n| ms / step | runs | instruction | JAX op |\n|---:|---:|---|---|")
  for op in ops[:12]:
    print(f"| {op.ms / steps:.1f} | {op.count:.0f} | `{op.name}` | "
          f"`{op.op_name.split('/', 1)[-1][-90:]}` |")
  print(flush=True)


def main(argv):
  del argv
  model, params = models.load(data=_DATA.value)
  for name in _WORKLOAD.value:
    profile(name, model, params)
    if _TRACE_STEPS.value:
      trace_profile(name, model, params)


if __name__ == "__main__":
  app.run(main)
