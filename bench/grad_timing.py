"""Shared by the renderer benches (no flags): XLA FLOP counts and the bare
jitted gradient that bounds what any renderer schedule can reach."""

import dataclasses
import time

import jax
import jax.numpy as jnp


def flops(compiled) -> float:
  """XLA cost-analysis FLOPs of a compiled program (0 when not reported)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0))


@dataclasses.dataclass(frozen=True)
class GradTiming:
  flops: float              # Of one call.
  seconds_per_call: float
  compile_s: float

  @property
  def gflops_per_sec(self) -> float:
    return self.flops / self.seconds_per_call / 1e9


def compile_grad(model, params, layer, batch, side, wrap=lambda f: f):
  """``(run, flops, compile_s)``: ``run()`` computes ``jit(grad)`` of one
  channel's mean at ``layer`` w.r.t. a ``[batch, side, side, 3]`` input
  (``jit(wrap(grad))``: e.g. ``wrap=atlasjax.xla_cpu.rewrite``)."""
  x = jnp.full((batch, side, side, 3), 0.5, jnp.float32)
  f = jax.jit(wrap(jax.grad(
      lambda x, p: model.apply(p, x, layers=(layer,))[layer][..., 0].mean())))
  t = time.perf_counter()
  compiled = f.lower(x, params).compile()
  compile_s = time.perf_counter() - t
  run = lambda: compiled(x, params).block_until_ready()
  run()
  return run, flops(compiled), compile_s


def time_grad(model, params, layer, batch, side, reps) -> GradTiming:
  """Times ``jit(grad)`` of one channel's mean at ``layer`` w.r.t. the input."""
  run, n_flops, compile_s = compile_grad(model, params, layer, batch, side)
  t = time.perf_counter()
  for _ in range(reps):
    run()
  return GradTiming(n_flops, (time.perf_counter() - t) / reps, compile_s)
