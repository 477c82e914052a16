"""A tiny custom CNN that follows atlasjax's model protocol.

Anything with ``apply(params, images, layers=None, perturb=None)`` and layer
metadata works with the whole library; the tests use this one where the real
GoogLeNet would be slow.
"""

import jax
import jax.numpy as jnp

from atlasjax.models import base

TOY_LAYERS = (
    base.Layer("conv1_pre_relu", 8, 2), base.Layer("conv1", 8, 2),
    base.Layer("conv2_pre_relu", 16, 4), base.Layer("conv2", 16, 4),
    base.Layer("logits", 10, 0),
)


def _toy_apply(params, images, layers=None, perturb=None):
  acts = {}
  perturb = perturb or {}
  wanted = None if layers is None else set(
      (layers,) if isinstance(layers, str) else layers)
  x = images * 2.0 - 1.0
  for name in ("conv1", "conv2"):
    x = jax.lax.conv_general_dilated(
        x, params[name]["kernel"], (2, 2), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC")) + params[name]["bias"]
    acts[name + "_pre_relu"] = x
    acts[name] = x = jax.nn.relu(x) + perturb.get(name, 0.0)
    if wanted is not None and wanted <= acts.keys():
      return {k: acts[k] for k in wanted}
  acts["logits"] = x.mean(axis=(1, 2)) @ params["head"]
  return acts if wanted is None else {k: acts[k] for k in wanted}


TOY_MODEL = base.Model(
    name="toy_cnn", apply=_toy_apply, layers=TOY_LAYERS, input_size=32,
    min_size=8, relu_twins=(("conv1", "conv1_pre_relu"), ("conv2", "conv2_pre_relu")),
    perturbable=("conv1", "conv2"), default_layer="conv2")


def toy_params(key=None):
  key = jax.random.PRNGKey(0) if key is None else key
  k1, k2, k3 = jax.random.split(key, 3)
  return {
      "conv1": {"kernel": jax.random.normal(k1, (3, 3, 3, 8)) * 0.5,
                "bias": jnp.full((8,), 0.1)},
      "conv2": {"kernel": jax.random.normal(k2, (3, 3, 8, 16)) * 0.2,
                "bias": jnp.full((16,), 0.1)},
      "head": jax.random.normal(k3, (16, 10)) * 0.3,
  }
