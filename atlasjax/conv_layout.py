"""Convolutions in the layout XLA:CPU's fast kernels need, inside loops too.

XLA:CPU runs a convolution through Eigen's fast kernel only when its operands
are laid out canonically: input ``N, spatial…, C``, kernel ``spatial…, I, O``,
output ``N, spatial…, C``. Forward convolutions of Flax models are already so.
The *input gradient* of a convolution is not: JAX's transpose rule emits a
convolution whose kernel has its feature dimensions swapped (``01oi`` in the
HLO). XLA's ``ConvCanonicalization`` pass fixes such convolutions by inserting
transposes, but it visits only the *entry* computation (see
``xla/service/cpu/conv_canonicalization.cc``). Inside a ``while`` loop body —
every ``lax.scan``, i.e. every render step and every SmoothGrad sample — the
gradient's convolutions stay non-canonical and fall back to XLA's generic
loop-nest emitter. Measured here (bench/RESULTS.md): a 3×3, 192-channel
conv stack's gradient runs 3.5× slower inside ``lax.scan`` than compiled
alone, and GoogLeNet's render step 1.4× slower.

:func:`canonical_convolutions` applies the same rewrite at the jaxpr level,
where it reaches every computation: each ``conv_general_dilated`` whose
dimension numbers are not canonical becomes ``transpose → canonical
convolution → transpose`` (identity transposes omitted). The values are the
same convolution, the same sums in the same order per output element; only
the memory layout of the operands changes. Transposes of loop-invariant
kernels (the network's weights) are hoisted out of the loop by XLA.

Only the backend that needs it pays: :func:`loop_body` applies it when the
loop runs on CPUs (the renderer's steps, SmoothGrad's samples). GPU and TPU
compilers assign convolution layouts in every computation themselves.
"""

from typing import Any, Callable

import jax
from jax import lax
import jax.extend as jex
import numpy as np

# Call-like primitives whose sub-jaxpr is the callee, evaluated in line so the
# rewrite reaches convolutions inside them. Control flow (scan, while, cond)
# and custom-derivative calls are bound as they are: their sub-jaxprs have
# other calling conventions.
_CALL_PRIMITIVES = ("jit", "pjit", "closed_call", "core_call", "remat", "checkpoint")


def bind(eqn, invals) -> list:
  """Binds ``eqn``'s primitive to ``invals`` as tracing did; a list of outputs."""
  with eqn.ctx.manager:
    out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
  return out if eqn.primitive.multiple_results else [out]


def _canonical_order(spec) -> tuple[int, ...]:
  """Physical dims ``(batch-like, spatial…, feature-like)`` of a conv spec.

  ``lax.ConvDimensionNumbers`` lists ``(batch, feature, spatial…)`` for the
  input and output and ``(out feature, in feature, spatial…)`` for the kernel;
  the canonical kernel order ``spatial…, I, O`` is handled by the caller.
  """
  return (spec[0], *spec[2:], spec[1])


def is_canonical(dimension_numbers) -> bool:
  """Whether a convolution's operands are already in Eigen's layout."""
  lhs, rhs, out = dimension_numbers
  nd = len(lhs)
  io = (*range(nd),)
  return (_canonical_order(lhs) == io and _canonical_order(out) == io
          and (*rhs[2:], rhs[1], rhs[0]) == io)


def _canonical_conv(eqn, lhs, rhs):
  dn = eqn.params["dimension_numbers"]
  nd = lhs.ndim
  lhs_perm = _canonical_order(dn.lhs_spec)
  rhs_perm = (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0])
  out_perm = _canonical_order(dn.out_spec)
  identity = tuple(range(nd))
  spatial = tuple(range(1, nd - 1))
  canonical = lax.ConvDimensionNumbers(
      lhs_spec=(0, nd - 1, *spatial), rhs_spec=(nd - 1, nd - 2, *range(nd - 2)),
      out_spec=(0, nd - 1, *spatial))
  if lhs_perm != identity:
    lhs = lax.transpose(lhs, lhs_perm)
  if rhs_perm != identity:
    rhs = lax.transpose(rhs, rhs_perm)
  params = dict(eqn.params, dimension_numbers=canonical)
  with eqn.ctx.manager:
    out = eqn.primitive.bind(lhs, rhs, **params)
  if out_perm != identity:
    out = lax.transpose(out, tuple(np.argsort(out_perm)))
  return [out]


def _evaluate(jaxpr, consts, args) -> list:
  env = {}

  def read(v):
    return v.val if isinstance(v, jex.core.Literal) else env[v]

  for v, c in zip(jaxpr.constvars, consts):
    env[v] = c
  for v, a in zip(jaxpr.invars, args):
    env[v] = a
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    name = eqn.primitive.name
    sub = eqn.params.get("jaxpr") if name in _CALL_PRIMITIVES else None
    if name == "conv_general_dilated" and not is_canonical(
        eqn.params["dimension_numbers"]):
      outs = _canonical_conv(eqn, *invals)
    elif isinstance(sub, jex.core.ClosedJaxpr):
      outs = _evaluate(sub.jaxpr, sub.consts, invals)
    elif isinstance(sub, jex.core.Jaxpr):
      outs = _evaluate(sub, (), invals)
    else:
      outs = bind(eqn, invals)
    for v, o in zip(eqn.outvars, outs):
      if not isinstance(v, jex.core.DropVar):
        env[v] = o
  return [read(v) for v in jaxpr.outvars]


def canonical_convolutions(fn: Callable[..., Any]) -> Callable[..., Any]:
  """``fn`` with every convolution in XLA:CPU's canonical layout.

  Same signature and values as ``fn`` (a pure function of arrays / pytrees of
  arrays). Meant for the function *inside* a loop after differentiation, e.g.
  ``lax.scan(canonical_convolutions(step), …)``: differentiating the result
  again is not supported (custom-derivative calls inside ``fn`` keep their
  rules, but the rewritten convolutions are plain primitives, which JAX
  differentiates correctly, only into non-canonical layouts again).
  """

  def wrapped(*args):
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    outs = _evaluate(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)

  return wrapped


def loop_body(fn: Callable[..., Any], platform: str | None = None) -> Callable[..., Any]:
  """``fn`` ready to be a loop body on ``platform`` (default: JAX's backend).

  :func:`canonical_convolutions` on CPU, ``fn`` itself elsewhere.
  """
  platform = platform or jax.default_backend()
  return canonical_convolutions(fn) if platform == "cpu" else fn
