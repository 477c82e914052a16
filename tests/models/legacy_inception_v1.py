"""The pre-Flax InceptionV1 forward pass: hand-written ``lax`` code over a
BVLC-named params dict (``weights.load_raw``).

Kept in the tests (only) as the regression reference for the Flax module:
``tests/models/test_flax_module.py`` checks that the module's outputs equal
this implementation's on the sample photos and that XLA compiles both to the
same program. The spec, the primitive ops and the layer metadata are shared
with :mod:`atlasjax.models.inception_v1`; what is kept here is the old wiring:
the forward loop, the blocks and the BVLC parameter names.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from atlasjax.models import base
from atlasjax.models.inception_v1 import (  # noqa: F401  (re-exported)
    BVLC_GOOGLENET, LRN, Conv, Inception, InceptionV1Spec, MaxPool, _op_outputs,
    conv2d, layer_metadata, local_response_norm, max_pool, to_model_input)

# BVLC names of the three 1×1 convolutions run as one fused convolution.
_FUSED_REDUCE_BRANCHES = ("1x1", "3x3_reduce", "5x5_reduce")


def _inception(params, x, block: Inception, acts: dict):
  p = params[block.source]
  reduce_kernel = jnp.concatenate(
      [p[b]["kernel"] for b in _FUSED_REDUCE_BRANCHES], axis=-1)
  reduce_bias = jnp.concatenate([p[b]["bias"] for b in _FUSED_REDUCE_BRANCHES])
  fused = conv2d(x, reduce_kernel, reduce_bias)
  b1, b3r, b5r = jnp.split(
      fused, [block.c1x1, block.c1x1 + block.c3x3_reduce], axis=-1)
  b3 = conv2d(jax.nn.relu(b3r), p["3x3"]["kernel"], p["3x3"]["bias"], padding=1)
  b5 = conv2d(jax.nn.relu(b5r), p["5x5"]["kernel"], p["5x5"]["bias"], padding=2)
  pooled = max_pool(x, 3, 1, padding=1, ceil_mode=True)
  bp = conv2d(pooled, p["pool_proj"]["kernel"], p["pool_proj"]["bias"])
  pre = {"1x1": b1, "3x3_bottleneck": b3r, "3x3": b3, "5x5_bottleneck": b5r,
         "5x5": b5, "pool_reduce": bp}
  for branch, value in pre.items():
    acts[f"{block.name}_{branch}_pre_relu"] = value
    acts[f"{block.name}_{branch}"] = jax.nn.relu(value)
  out = jnp.concatenate([b1, b3, b5, bp], axis=-1)
  acts[block.name + "_pre_relu"] = out
  acts[block.name] = out = jax.nn.relu(out)
  return out


def make_apply(spec: InceptionV1Spec, metadata: tuple[base.Layer, ...]):
  valid = {layer.name for layer in metadata}
  def apply(params, images, layers: Sequence[str] | None = None,
            perturb: dict | None = None):
    """Runs the network on NHWC RGB images in [0, 1]; returns named outputs.

    ``perturb`` maps output names to arrays added to that output before the
    rest of the network reads it; ``jax.jvp`` through it linearises the
    downstream network (the atlas attribution does this). Only outputs that
    the next op consumes (a conv, pool, LRN or block output) can be perturbed.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(
          f"images must be NHWC with 3 RGB channels, got shape {images.shape}")
    if min(images.shape[1:3]) < spec.min_size:
      raise ValueError(
          f"{spec.name} needs images of at least {spec.min_size} px per side, "
          f"got {images.shape[1:3]}; resize or pad the input")
    wanted = None
    if layers is not None:
      wanted = {layers} if isinstance(layers, str) else set(layers)
      unknown = wanted - valid
      if unknown:
        raise base.UnknownLayerError(
            f"Unknown layer(s) {sorted(unknown)} for model {spec.name!r}. "
            "Valid layers: " + ", ".join(layer.name for layer in metadata))
    acts: dict[str, jax.Array] = {}
    perturb = perturb or {}
    chain = {name for op in spec.ops for name in _op_outputs(op)[-1:]}
    if set(perturb) - chain:
      raise ValueError(
          f"Cannot perturb {sorted(set(perturb) - chain)}: only outputs on the "
          f"main path can be perturbed ({', '.join(sorted(chain))}).")

    def done():
      return wanted is not None and wanted <= acts.keys()

    x = to_model_input(images, spec.input)
    for op in spec.ops:
      if isinstance(op, Conv):
        p = params[op.source]
        x = conv2d(x, p["kernel"], p["bias"], op.stride, op.padding)
        acts[op.name + "_pre_relu"] = x
        acts[op.name] = x = jax.nn.relu(x)
      elif isinstance(op, MaxPool):
        acts[op.name] = x = max_pool(x, op.window, op.stride, op.padding,
                                     spec.ceil_mode)
      elif isinstance(op, LRN):
        acts[op.name] = x = local_response_norm(x, spec.lrn)
      else:
        x = _inception(params, x, op, acts)
      name = _op_outputs(op)[-1]
      if name in perturb:
        acts[name] = x = x + perturb[name]
      if done():
        break
    else:
      pooled = acts["avgpool"] = x.mean(axis=(1, 2))
      p = params[spec.classifier]
      logits = acts["logits"] = pooled @ p["kernel"] + p["bias"]
      acts["probs"] = jax.nn.softmax(logits, axis=-1)
    if wanted is not None:
      return {name: acts[name] for name in wanted}
    return acts

  return apply


def build(spec: InceptionV1Spec = BVLC_GOOGLENET) -> base.Model:
  metadata = layer_metadata(spec)
  return base.Model(
      name=spec.name, apply=make_apply(spec, metadata), layers=metadata,
      input_size=spec.input_size, min_size=spec.min_size)
