"""Gradients XLA:CPU runs fast: two jaxpr rewrites for the render step.

Rendering differentiates a network with respect to its input, in a loop. Two
things XLA:CPU does with such a program cost more than the convolutions
themselves (bench/RESULTS.md, measured with XLA's own per-operation profile):

1. **Convolution layouts inside loops** (:func:`canonical_convolutions`).
2. **Max pooling's gradient** (:func:`fast_pool_gradients`).

:func:`rewrite` applies both; :func:`loop_body` applies them on CPU only.

Convolution layouts
-------------------

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
same convolution; only the memory layout of the operands changes.
Transposes of loop-invariant kernels (the network's weights) are hoisted out
of the loop by XLA. Two kinds of convolution are left as written, because
the canonical layout measured slower for them (bench/RESULTS.md):

* grouped (depthwise) convolutions: XLA:CPU has no fast kernel for them in
  either layout, and transposing their operands made EfficientNet-Lite0's
  render step 2.4× slower;
* the input gradient of a *patchify* convolution (a Vision Transformer's
  patch embedding: stride equal to the kernel size), which JAX's transpose
  rule emits as a convolution whose input dilation equals its kernel's
  spatial size (:func:`is_patchify_transpose`). Its input is mostly the
  zeros of the dilation; in the canonical layout it cost ViT-Ti's gradient
  in a scan 9–17 %, and it is the only convolution in a ViT's gradient.

Max pooling's gradient
----------------------
JAX differentiates ``reduce_window_max`` into ``select_and_scatter_add``.
XLA:CPU expands that into a variadic reduce-window that carries, for every
window, the argmax's coordinates (one ``int32`` iota per dimension, each the
size of the padded input), then a scatter into a zero-filled input-sized
buffer. On GoogLeNet's ``mixed4a`` gradient at batch 32 those iotas,
broadcasts, index reductions and scatters were over half of XLA's summed
operation time — more than all convolutions. :func:`fast_pool_gradients`
computes the same gradient with static slices: for each of the ``k×k``
window offsets, the strided slice of the padded input that the offset
reads; the first offset (in window order, as XLA's ``ge`` selection keeps the
earlier of equal values) whose value equals the window's maximum receives
the output's cotangent, placed back with an interior-padded ``pad``. All of
it is element-wise and fuses; no indices are materialised. The result is
identical to ``select_and_scatter_add`` (tested, ties included); only a
window whose maximum is ``-inf`` (all values ``-inf``) may route its
cotangent differently.

Only the backend that needs it pays: :func:`loop_body` applies the rewrites
when the loop runs on CPUs (the renderer's steps, SmoothGrad's samples). GPU
and TPU compilers assign convolution layouts in every computation and
have their own select-and-scatter kernels.
"""

import itertools
from typing import Any, Callable

import jax
from jax import lax
import jax.numpy as jnp
import jax.extend as jex
from jax.extend import source_info_util
import numpy as np

from atlasjax import jaxprs

# Call-like primitives whose sub-jaxpr is the callee, evaluated in line so the
# rewrite reaches convolutions inside them. Control flow (scan, while, cond)
# and custom-derivative calls are bound as they are: their sub-jaxprs have
# other calling conventions.
_CALL_PRIMITIVES = ("jit", "pjit", "closed_call", "core_call", "remat", "checkpoint")


def _canonical_order(spec) -> tuple[int, ...]:
  """Physical dims ``(batch-like, spatial…, feature-like)`` of a conv spec.

  ``lax.ConvDimensionNumbers`` lists ``(batch, feature, spatial…)`` for the
  input and output and ``(out feature, in feature, spatial…)`` for the kernel;
  the kernel's canonical order ``spatial…, I, O`` is :func:`_kernel_order`.
  """
  return (spec[0], *spec[2:], spec[1])


def _kernel_order(spec) -> tuple[int, ...]:
  """Physical dims ``(spatial…, in feature, out feature)`` of a kernel spec."""
  return (*spec[2:], spec[1], spec[0])


def is_canonical(dimension_numbers) -> bool:
  """Whether a convolution's operands are already in Eigen's layout."""
  lhs, rhs, out = dimension_numbers
  nd = len(lhs)
  io = (*range(nd),)
  return (_canonical_order(lhs) == io and _canonical_order(out) == io
          and _kernel_order(rhs) == io)


def is_patchify_transpose(eqn) -> bool:
  """Whether a convolution is the input gradient of a patchify convolution.

  A convolution with stride ``s`` equal to its kernel size ``k`` (each patch
  read once, as a ViT's patch embedding) has as input gradient a convolution
  over the cotangent dilated by ``s`` with the flipped ``k``-sized kernel:
  ``lhs_dilation`` equal to the kernel's spatial shape, above 1.
  """
  p = eqn.params
  rhs_spec = p["dimension_numbers"].rhs_spec
  kernel = tuple(eqn.invars[1].aval.shape[d] for d in rhs_spec[2:])
  dilation = tuple(p["lhs_dilation"] or (1,) * len(kernel))
  return dilation == kernel and any(k > 1 for k in kernel)


def _canonical_conv(eqn, lhs, rhs):
  dn = eqn.params["dimension_numbers"]
  nd = lhs.ndim
  lhs_perm = _canonical_order(dn.lhs_spec)
  rhs_perm = _kernel_order(dn.rhs_spec)
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


def _pool_gradient(eqn, source, operand):
  """``select_and_scatter_add(source, operand)`` for max / min pooling."""
  p = eqn.params
  name = getattr(p["select_prim"], "name", "")
  if name not in ("ge", "le"):
    return jaxprs.bind(eqn, [source, operand])
  fill = -jnp.inf if name == "ge" else jnp.inf
  padded = lax.pad(operand, jnp.asarray(fill, operand.dtype),
                   [(lo, hi, 0) for lo, hi in p["padding"]])
  strides, out_shape = p["window_strides"], source.shape

  def window(offset):
    limit = [o + (n - 1) * s + 1 for o, n, s in zip(offset, out_shape, strides)]
    return lax.slice(padded, offset, limit, strides)

  offsets = list(itertools.product(*(range(w) for w in p["window_dimensions"])))
  values = [window(o) for o in offsets]
  best = values[0]
  for v in values[1:]:
    best = lax.max(best, v) if name == "ge" else lax.min(best, v)
  zero = jnp.zeros((), source.dtype)
  taken = jnp.zeros(out_shape, bool)
  grad = jnp.zeros(padded.shape, source.dtype)
  for offset, v in zip(offsets, values):
    hit = (v == best) & ~taken       # the first equal value wins, as with ge / le
    taken = taken | hit
    placed = [(o, size - (o + (n - 1) * s + 1), s - 1)
              for o, size, n, s in zip(offset, padded.shape, out_shape, strides)]
    grad = grad + lax.pad(jnp.where(hit, source, zero), zero, placed)
  start = [lo for lo, _ in p["padding"]]
  return [lax.slice(grad, start, [b + n for b, n in zip(start, operand.shape)])]


def _evaluate(jaxpr, consts, args, rules, prefix) -> list:
  """Evaluates ``jaxpr``, applying ``rules`` by primitive name.

  Every equation is re-bound under its original source location and name
  stack (``prefix`` + its own), so the rewritten program's HLO metadata still
  names the JAX operation (and ``transpose(jvp(...))`` for backward passes)
  that each instruction comes from, as profiles need.
  """
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
    stack = prefix + eqn.source_info.name_stack
    with source_info_util.user_context(eqn.source_info.traceback, name_stack=stack):
      if name in rules:
        outs = rules[name](eqn, *invals)
      elif isinstance(sub, jex.core.ClosedJaxpr):
        outs = _evaluate(sub.jaxpr, sub.consts, invals, rules, stack)
      elif isinstance(sub, jex.core.Jaxpr):
        outs = _evaluate(sub, (), invals, rules, stack)
      else:
        outs = jaxprs.bind(eqn, invals)
    for v, o in zip(eqn.outvars, outs):
      if not isinstance(v, jex.core.DropVar):
        env[v] = o
  return [read(v) for v in jaxpr.outvars]


def _conv_rule(eqn, lhs, rhs):
  p = eqn.params
  # Grouped (e.g. depthwise) convolutions and patchify input gradients are
  # left as they are: in the canonical layout they ran slower (EfficientNet-
  # Lite0's render step 2.4x, ViT-Ti's gradient 9-17 %; bench/RESULTS.md).
  if (is_canonical(p["dimension_numbers"]) or p["feature_group_count"] != 1
      or p["batch_group_count"] != 1 or is_patchify_transpose(eqn)):
    return jaxprs.bind(eqn, [lhs, rhs])
  return _canonical_conv(eqn, lhs, rhs)


def _rewritten(fn: Callable[..., Any], rules) -> Callable[..., Any]:
  """``fn`` re-traced to a jaxpr on each call and evaluated with ``rules``."""

  def wrapped(*args):
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    outs = _evaluate(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args),
                     rules, source_info_util.new_name_stack())
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)

  return wrapped


_CONV_RULES = {"conv_general_dilated": _conv_rule}
_POOL_RULES = {"select_and_scatter_add": _pool_gradient}


def canonical_convolutions(fn: Callable[..., Any]) -> Callable[..., Any]:
  """``fn`` with every convolution in XLA:CPU's canonical layout."""
  return _rewritten(fn, _CONV_RULES)


def fast_pool_gradients(fn: Callable[..., Any]) -> Callable[..., Any]:
  """``fn`` with max / min pooling gradients as static slices."""
  return _rewritten(fn, _POOL_RULES)


def rewrite(fn: Callable[..., Any]) -> Callable[..., Any]:
  """``fn`` with both rewrites: canonical convolutions, sliced pool gradients.

  Same signature and values as ``fn`` (a pure function of arrays / pytrees of
  arrays), traced to a jaxpr on each call (inside ``jit``, once per trace).
  Meant for a function that already differentiates, e.g. the render step:
  the rewritten operations are plain primitives, so differentiating the
  result again works but reintroduces what the rewrite removed.
  """
  return _rewritten(fn, {**_CONV_RULES, **_POOL_RULES})


def loop_body(fn: Callable[..., Any], platform: str | None = None) -> Callable[..., Any]:
  """``fn`` ready to be a loop body on ``platform`` (default: JAX's backend).

  :func:`rewrite` on CPU, ``fn`` itself elsewhere.
  """
  platform = platform or jax.default_backend()
  return rewrite(fn) if platform == "cpu" else fn
