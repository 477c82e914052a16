"""Shared by the renderer benches (no flags): XLA FLOP counts, the bare
jitted gradient that bounds what any renderer schedule can reach, and the
benches' objective families."""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax.optvis import objectives

# The atlas icon objective's cosine exponent (the paper's and AtlasConfig's).
ATLAS_COSSIM_POW = 4.0


def flops(compiled) -> float:
  """XLA cost-analysis FLOPs of a compiled program (0 when not reported)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", 0.0))


def step_flops(renderer, params, ids, args) -> float:
  """Cost-analysis FLOPs of one optimisation step of ``renderer``'s chunk."""
  state = jax.eval_shape(renderer.init, jax.random.PRNGKey(0), ids, args)
  step = jax.jit(lambda r, o, a, k, p: renderer.step(r, o, a, k, jnp.int32(0), p))
  return flops(step.lower(*state, renderer.network_params(params)).compile())


class Channel:
  """``channel(layer, c)`` as one family object (one compile per config)."""

  def __init__(self, layer):
    self.layer = layer

  def __call__(self, c):
    return objectives.channel(self.layer, c)


class Icon:
  """The atlas icon objective for a direction (whitening closed over)."""

  def __init__(self, layer, whitening):
    self.layer, self.whitening = layer, whitening

  def __call__(self, v):
    return objectives.direction_neuron_cossim(
        self.layer, v, cossim_pow=ATLAS_COSSIM_POW, whitening=self.whitening)


def synthetic_whitening(depth: int, rng: np.random.Generator) -> jax.Array:
  """A well-conditioned whitening matrix of the atlas' shape (timing only)."""
  a = rng.normal(size=(4 * depth, depth)).astype(np.float32)
  return jnp.asarray(np.linalg.inv(a.T @ a / len(a) + 0.1 * np.eye(depth)), jnp.float32)


@dataclasses.dataclass(frozen=True)
class GradTiming:
  flops: float              # Of one call.
  seconds_per_call: float
  compile_s: float

  @property
  def gflops_per_sec(self) -> float:
    return self.flops / self.seconds_per_call / 1e9


def channel_grad(model, layer):
  """``(x, params) -> d mean(layer[..., 0]) / d x``: the benches' bare gradient."""
  return jax.grad(lambda x, p: model.apply(p, x, layers=(layer,))[layer][..., 0].mean())


def compile_grad(model, params, layer, batch, side, wrap=lambda f: f):
  """``(run, flops, compile_s)``: ``run()`` computes ``jit(grad)`` of one
  channel's mean at ``layer`` w.r.t. a ``[batch, side, side, 3]`` input
  (``jit(wrap(grad))``: e.g. ``wrap=atlasjax.xla_cpu.rewrite``)."""
  x = jnp.full((batch, side, side, 3), 0.5, jnp.float32)
  f = jax.jit(wrap(channel_grad(model, layer)))
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
