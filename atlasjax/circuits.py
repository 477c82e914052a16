"""Circuits: expanded weights between any two layers of any model.

Following the Circuits thread (Olah et al. 2020, "Visualizing Weights"), the
*expanded weight* from channel ``i`` of layer ``A`` to channel ``j`` of a later
layer ``B`` is the linear map between them once the network in between is
linearised: every ReLU (and ReLU6 / clip) is treated as the identity and every
max pooling as the average of the values in its window. For adjacent layers
this is the convolution kernel itself; through a bottleneck it is the product
of the two convolutions. The result is one small spatial kernel per pair,
``W[j, :, :, i]`` with the extent of ``B``'s receptive field in ``A``.

Nothing here knows an architecture. :func:`expanded_weights` traces the
model's own ``apply`` with ``perturb={A: delta}`` to a jaxpr and evaluates it
with a small interpreter that swaps, *on the path that depends on ``delta``*:

* ``max(x, c)`` / ``min(x, c)`` where only ``x`` depends on ``delta`` (ReLU,
  also inside ``jax.nn.relu``'s ``custom_jvp_call``; ReLU6; ``clip``) -> ``x``;
* ``clamp(lo, x, hi)`` -> ``x``;
* ``reduce_window_max`` (max pooling) -> the mean of the *in-bounds* values of
  each window: padding is excluded from the count, like TensorFlow's
  ``avg_pool`` with ``SAME`` padding that Lucid's linearised models use;
* ``reduce_max`` (global max pooling) -> the mean over the same axes.

A matrix product of two values that both depend on ``delta`` (attention's
query·key and weights·values in a Vision Transformer) has no linear
counterpart with a fixed kernel: :class:`NoKernelError` names the layers.

Everything that does not depend on ``delta`` (the stem computing ``A`` from
the image) runs unchanged. The map ``delta -> B`` is then affine; its VJP from
``B``'s centre position, one cotangent per output channel, gives the kernels
(the offset, i.e. the bias, drops out of the VJP). Any other nonlinearity left
between ``A`` and ``B`` (e.g. a local response normalisation) is linearised at
the model's activations on a mid-grey image (:data:`PROBE_GREY`). ``B`` may be
a post-ReLU layer: its own ReLU is linearised, so the weights are those to its
pre-activation.

The kernel extent is found structurally: a NaN cotangent at ``B``'s centre is
pulled back through the linear map, and the positions of ``A`` it reaches
(NaN propagates through every multiply-add, even by a zero weight) form the
receptive field. The probe image grows until that field lies clear of the
border, so no kernel is cut by padding.

Unit layers and their neighbours (used by the circuit view and the
Microscope): a *unit layer* is a spatial layer with a declared ReLU twin that
the model can perturb (GoogLeNet: ``conv2d0..2``, ``mixed3a..mixed5b``; a
model without ReLU twins uses every spatial perturbable layer);
:func:`previous_layer` and :func:`next_layer` step along them, so the inputs
of ``mixed4a`` come from ``mixed3b`` through ``maxpool4``.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np
from jax import lax

from atlasjax import jaxprs
from atlasjax.models import base

# The image the trace runs on: only ops not on the delta path see it, and the
# linearisation point of any nonlinearity left between A and B is its output.
PROBE_GREY = 0.5
# Output channels whose kernels are pulled back in one vmapped VJP.
DEFAULT_BATCH = 64
# The probe image doubles until B's receptive field in A clears the border,
# up to this multiple of the model's input size.
MAX_SIZE_FACTOR = 4
# Starting probe side, in units of B's stride: 8 positions of B.
_START_POSITIONS = 8


class CircuitError(ValueError):
  """Layers that have no expanded weights between them (with the fix)."""


class NoKernelError(CircuitError):
  """The path from A to B multiplies two activations (attention): no kernel."""


class _Bilinear(Exception):
  """Raised by the interpreter at a product of two delta-dependent values."""


# ----------------------------------------------------------------------------
# The linearising jaxpr interpreter.

_SUBJAXPR_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _subjaxpr(eqn):
  for key in _SUBJAXPR_PARAMS:
    sub = eqn.params.get(key)
    if isinstance(sub, jex.core.ClosedJaxpr):
      return sub.jaxpr, sub.consts
    if isinstance(sub, jex.core.Jaxpr):
      return sub, ()
  return None


def _as_out(x, aval):
  return jnp.broadcast_to(jnp.asarray(x, aval.dtype), aval.shape)


def _avg_pool_in_bounds(x, p):
  """Max pooling's linear counterpart: mean of the in-bounds window values."""
  args = (p["window_dimensions"], p["window_strides"], p["padding"],
          p["base_dilation"], p["window_dilation"])
  total = lax.reduce_window(x, 0.0, lax.add, *args)
  return total / jnp.asarray(_window_counts(x.shape, *args), x.dtype)


def _window_counts(shape, window, strides, padding, base_dilation,
                   window_dilation) -> np.ndarray:
  """In-bounds values per pooling window, in NumPy (static shapes).

  Counting with a ``reduce_window`` over ones would be constant-folded by XLA,
  slowly; the count factorises over axes.
  """
  if any(d != 1 for d in base_dilation):
    raise CircuitError("max pooling with base dilation is not supported")
  counts = np.ones((), np.float32)
  for n, w, s, (lo, hi), wd in zip(shape, window, strides, padding,
                                   window_dilation):
    outputs = (n + lo + hi - (w - 1) * wd - 1) // s + 1
    taps = np.arange(outputs)[:, None] * s - lo + np.arange(w)[None, :] * wd
    axis = ((taps >= 0) & (taps < n)).sum(axis=1).astype(np.float32)
    counts = np.multiply.outer(counts, axis)
  return counts


def _linearised_eqn(eqn, invals, deps):
  """Output values of ``eqn`` (some input depends on delta), linearised."""
  name = eqn.primitive.name
  aval = eqn.outvars[0].aval
  if name == "dot_general" and all(deps):
    raise _Bilinear  # attention: query·key, weights·values — no fixed kernel
  if name in ("max", "min") and deps.count(True) == 1:
    return [_as_out(invals[deps.index(True)], aval)]
  if name == "clamp" and deps == [False, True, False]:
    return [_as_out(invals[1], aval)]
  if name == "reduce_window_max":
    return [_avg_pool_in_bounds(invals[0], eqn.params)]
  if name == "reduce_max":
    return [jnp.mean(invals[0], axis=tuple(eqn.params["axes"]))]
  sub = _subjaxpr(eqn)
  if sub is not None:
    jaxpr, consts = sub
    if len(jaxpr.invars) == len(invals):
      return _evaluate(jaxpr, consts, invals, deps)[0]
  return jaxprs.bind(eqn, invals)


def _evaluate(jaxpr, consts, args, deps):
  """Evaluates ``jaxpr`` with the delta-dependent nonlinearities linearised.

  Returns ``(outputs, output_depends_on_delta)``.
  """
  env, dep = {}, {}

  def read(v):
    return v.val if isinstance(v, jex.core.Literal) else env[v]

  def depends(v):
    return not isinstance(v, jex.core.Literal) and dep.get(v, False)

  for v, c in zip(jaxpr.constvars, consts):
    env[v], dep[v] = c, False
  for v, a, d in zip(jaxpr.invars, args, deps):
    env[v], dep[v] = a, d
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    in_deps = [depends(v) for v in eqn.invars]
    on_path = any(in_deps)
    outs = _linearised_eqn(eqn, invals, in_deps) if on_path else jaxprs.bind(eqn, invals)
    for v, o in zip(eqn.outvars, outs):
      if not isinstance(v, jex.core.DropVar):
        env[v], dep[v] = o, on_path
  return [read(v) for v in jaxpr.outvars], [depends(v) for v in jaxpr.outvars]


def linearised_map(model: base.Model, params, layer_a: str, layer_b: str,
                   size: int):
  """``(delta -> B, zeros_like(A))``: the linearised, affine map A -> B.

  ``delta`` is added to ``A``'s output (``[1, h_a, w_a, C_a]``, the grid of a
  ``size``-pixel image); the result is ``B``'s ``[1, h_b, w_b, C_b]``.
  """
  image = jnp.full((1, size, size, 3), PROBE_GREY, jnp.float32)
  shape_a = jax.eval_shape(
      lambda: model.apply(params, image, layers=(layer_a,))[layer_a])
  zeros = jnp.zeros(shape_a.shape, shape_a.dtype)

  def forward(delta):
    return model.apply(params, image, layers=(layer_b,),
                       perturb={layer_a: delta})[layer_b]

  closed = jax.make_jaxpr(forward)(zeros)

  def linear(delta):
    try:
      outs, deps = _evaluate(closed.jaxpr, closed.consts, [delta], [True])
    except _Bilinear:
      raise NoKernelError(
          f"No expanded weights from {layer_a!r} to {layer_b!r} in {model.name!r}: "
          "the path multiplies two activations (attention), so no kernel connects "
          "them; pick A and B within one MLP (e.g. fc1 -> fc2) or use "
          "attributions.") from None
    if not deps[0]:
      raise CircuitError(
          f"{layer_b!r} does not depend on {layer_a!r} in {model.name!r}: "
          "pick a layer B computed after A on the same path.")
    return outs[0]

  return linear, zeros


# ----------------------------------------------------------------------------
# Unit layers.

def _perturbable(model: base.Model, name: str) -> bool:
  allowed = getattr(model, "perturbable", None)
  return allowed is None or name in allowed


def _twins(model: base.Model) -> dict[str, str]:
  declared = getattr(model, "relu_twins", None)
  if declared:
    return dict(declared)
  # Models built before relu_twins existed: the ``_pre_relu`` naming convention.
  names = set(model.layer_names)
  return {n: n + "_pre_relu" for n in names if n + "_pre_relu" in names}


def unit_layers(model: base.Model) -> tuple[str, ...]:
  """Spatial, perturbable layers with a ReLU twin, in network order.

  A model that declares no ReLU twins (e.g. EfficientNet-Lite, whose block
  outputs are linear) uses all its spatial perturbable layers.
  """
  twins = _twins(model)
  spatial = [l.name for l in model.layers
             if l.spatial and _perturbable(model, l.name)]
  return tuple([n for n in spatial if n in twins] or spatial)


def previous_layer(model: base.Model, name: str) -> str | None:
  """The unit layer before ``name`` (whose units feed it), or None."""
  model.layer(name)
  earlier = [l for l in unit_layers(model) if model.index(l) < model.index(name)]
  return earlier[-1] if earlier else None


def next_layer(model: base.Model, name: str) -> str | None:
  """The unit layer after ``name`` (which its units feed), or None."""
  later = [l for l in unit_layers(model) if model.index(l) > model.index(name)]
  return later[0] if later else None


# ----------------------------------------------------------------------------
# Expanded weights.

def _check(model: base.Model, layer_a: str, layer_b: str):
  a, b = model.layer(layer_a), model.layer(layer_b)
  for layer in (a, b):
    if not layer.spatial:
      raise CircuitError(f"{layer.name!r} has no spatial extent; expanded "
                         "weights connect two spatial layers.")
  if model.index(layer_a) >= model.index(layer_b):
    raise CircuitError(f"{layer_a!r} is not before {layer_b!r} in "
                       f"{model.name!r}; pass the earlier layer as layer_a.")
  check = getattr(model, "check_perturbable", None)
  if check is not None:
    try:
      check((layer_a,))
    except ValueError as e:
      raise CircuitError(f"{e} Expanded weights start from a perturbable "
                         "layer (see circuits.unit_layers).") from None
  elif not _perturbable(model, layer_a):
    raise CircuitError(f"{model.name!r} cannot perturb {layer_a!r}.")
  return a, b


def _support(grad) -> tuple[int, int, int, int]:
  hit = np.isnan(np.asarray(grad)[0]).any(axis=-1)
  rows, cols = np.nonzero(hit)
  if rows.size == 0:
    return None
  return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


@functools.partial(jax.jit, static_argnums=(0,))
def _pull_back(linear, zeros, cotangents):
  _, vjp = jax.vjp(linear, zeros)
  return jax.vmap(lambda c: vjp(c)[0])(cotangents)


def expanded_weights(model: base.Model, params, layer_a: str, layer_b: str, *,
                     channels_b: Sequence[int] | None = None,
                     size: int | None = None,
                     batch: int = DEFAULT_BATCH) -> np.ndarray:
  """Expanded weights ``W [C_b', kh, kw, C_a]`` from ``layer_a`` to ``layer_b``.

  ``W[j, dy, dx, i]`` is how much ``B``'s channel ``channels_b[j]`` at its
  centre position changes per unit of ``A``'s channel ``i`` at offset
  ``(dy, dx)`` of the receptive field (``kh × kw``, in ``A``'s grid), with
  the network in between linearised (see the module docstring).

  Args:
    model: any model of the protocol whose ``perturb`` accepts ``layer_a``.
    params: its parameters.
    layer_a: the earlier (input) layer.
    layer_b: a later layer (a post-ReLU name gives its pre-activation's
      weights).
    channels_b: output channels (default: all of ``B``).
    size: probe image side; default: grown until the receptive field fits.
    batch: output channels per vmapped VJP.
  """
  a, b = _check(model, layer_a, layer_b)
  channels = (np.arange(b.depth) if channels_b is None
              else np.asarray(channels_b, np.int64).reshape(-1))
  if channels.size and (channels.min() < 0 or channels.max() >= b.depth):
    raise CircuitError(f"channels_b must lie in 0..{b.depth - 1} for {b.name!r}")
  grow = size is None
  size = size or max(model.min_size, _START_POSITIONS * b.stride)
  limit = MAX_SIZE_FACTOR * max(model.input_size, size)
  while True:
    linear, zeros = linearised_map(model, params, layer_a, layer_b, size)
    out = jax.eval_shape(linear, zeros)
    _, hb, wb, cb = out.shape
    cy, cx = hb // 2, wb // 2
    probe = jnp.zeros((1,) + out.shape, out.dtype).at[0, 0, cy, cx].set(jnp.nan)
    box = _support(_pull_back(linear, zeros, probe)[0])
    if box is None:
      raise CircuitError(f"{layer_b!r} does not depend on {layer_a!r}.")
    r0, r1, c0, c1 = box
    ha, wa = zeros.shape[1:3]
    clear = r0 > 0 and c0 > 0 and r1 < ha and c1 < wa
    if clear or not grow:
      break
    if 2 * size > limit:
      raise CircuitError(
          f"The receptive field of {layer_b!r} in {layer_a!r} does not fit a "
          f"{size}px probe; pass size= explicitly.")
    size *= 2
  kernels = []
  for start in range(0, channels.size, batch):
    chunk = channels[start:start + batch]
    cot = np.zeros((batch,) + out.shape, np.float32)
    cot[np.arange(chunk.size), 0, cy, cx, chunk] = 1.0
    grads = _pull_back(linear, zeros, jnp.asarray(cot))
    kernels.append(np.asarray(grads[:chunk.size, 0, r0:r1, c0:c1, :]))
  if not kernels:
    return np.zeros((0, r1 - r0, c1 - c0, a.depth), np.float32)
  return np.concatenate(kernels)


# ----------------------------------------------------------------------------
# Ranking connections.

def signed_norms(kernels) -> tuple[np.ndarray, np.ndarray]:
  """L2 norms of the positive and negative parts of kernels ``[..., kh, kw]``.

  A connection that excites in one place and inhibits in another is strong in
  both lists, as in the Circuits thread's positive/negative weight views.
  """
  k = np.asarray(kernels, np.float32)
  pos = np.sqrt(np.sum(np.maximum(k, 0.0) ** 2, axis=(-2, -1)))
  neg = np.sqrt(np.sum(np.minimum(k, 0.0) ** 2, axis=(-2, -1)))
  return pos, neg


def _top(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
  order = np.argsort(-scores, kind="stable")[:k]
  return [(int(i), float(scores[i])) for i in order if scores[i] > 0]


def strongest_inputs(weights, j: int, k: int) -> dict[str, list]:
  """The ``k`` strongest positive and negative inputs of output unit ``j``.

  ``weights`` is ``[C_b, kh, kw, C_a]``; returns ``{"positive": [(i, norm)],
  "negative": [(i, norm)]}`` ranked by the norm of the kernel's positive
  (negative) part.
  """
  pos, neg = signed_norms(np.moveaxis(np.asarray(weights)[j], -1, 0))
  return {"positive": _top(pos, k), "negative": _top(neg, k)}


def strongest_outputs(weights, i: int, k: int) -> dict[str, list]:
  """The ``k`` units of ``B`` that input unit ``i`` excites / inhibits most."""
  pos, neg = signed_norms(np.asarray(weights)[..., i])
  return {"positive": _top(pos, k), "negative": _top(neg, k)}


# ----------------------------------------------------------------------------
# Rendering units of several layers in one batch.

@functools.lru_cache(maxsize=None)
def layer_channel_family(layers: tuple[str, ...]):
  """One objective family over units of several layers, for one render call.

  ``make(arg)`` with ``arg = [layer_index, channel]`` maximises that channel
  of ``layers[layer_index]``; every item reads all ``layers`` (the network
  runs to the deepest), but only its own layer's channel enters its value.
  Cached, so the renderer sees the same ``make`` and compiles once.
  """
  from atlasjax.optvis import objectives  # pylint: disable=g-import-not-at-top
  layers = tuple(layers)

  def make(arg):
    which, index = arg[0], arg[1]

    def fn(acts):
      values = jnp.stack([jnp.take(acts[l], index, axis=-1, mode="clip").mean()
                          for l in layers])
      return values[which]
    return objectives.Objective(fn, layers, "unit:" + ",".join(layers))
  return make


def unit_args(model: base.Model, layers: Sequence[str],
              units: Sequence[tuple[str, int]]) -> np.ndarray:
  """``[N, 2]`` int32 ``(layer_index, channel)`` for :func:`layer_channel_family`."""
  index = {l: n for n, l in enumerate(layers)}
  rows = []
  for layer, channel in units:
    depth = model.layer(layer).depth
    if layer not in index or not 0 <= channel < depth:
      raise CircuitError(f"unit {layer}:{channel} is not in {list(layers)} "
                         f"(channels 0..{depth - 1})")
    rows.append((index[layer], channel))
  return np.asarray(rows, np.int32).reshape(-1, 2)


def parse_unit(text: str) -> tuple[str, int]:
  """``"mixed4b:409"`` -> ``("mixed4b", 409)``, with a one-line error."""
  layer, sep, channel = text.rpartition(":")
  if not sep or not layer or not channel.isdigit():
    raise CircuitError(f"unit {text!r} must look like LAYER:CHANNEL, "
                       "e.g. mixed4b:389")
  return layer, int(channel)


__all__ = ["CircuitError", "NoKernelError", "expanded_weights", "linearised_map",
           "unit_layers", "previous_layer", "next_layer", "signed_norms",
           "strongest_inputs", "strongest_outputs", "layer_channel_family",
           "unit_args", "parse_unit", "PROBE_GREY"]
