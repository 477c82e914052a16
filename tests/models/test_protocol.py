"""The model protocol (``apply(params, images, layers=None)`` + layer metadata)
holds for a tiny custom CNN as well as for GoogLeNet."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax.models import base


def check_protocol(model: base.Model, params, size: int) -> dict:
  """Generic checks any protocol model must pass; returns the full outputs."""
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, size, size, 3))
  lo, hi = model.input_range
  assert (lo, hi) == (0.0, 1.0)
  full = jax.jit(model.apply)(params, x)
  # Every declared layer is returned by a full run, with the declared depth.
  assert set(model.layer_names) <= set(full)
  for layer in model.layers:
    value = full[layer.name]
    assert value.shape[0] == 2 and value.shape[-1] == layer.depth, layer
    assert value.ndim == (4 if layer.spatial else 2), layer
    if layer.spatial:
      assert value.shape[1] == -(-size // layer.stride), (layer, value.shape)
  # layers= returns exactly what was asked, with the same values.
  first, last = model.layer_names[0], model.layer_names[-1]
  for wanted in ((first,), (first, last), [last]):
    out = jax.jit(lambda p, x, wanted=wanted: model.apply(p, x, layers=wanted))(params, x)
    assert set(out) == set(wanted)
    for name in wanted:  # separately compiled programs may round differently
      a, b = np.asarray(out[name]), np.asarray(full[name])
      assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), name
  # Metadata queries.
  assert model.check_layers(first) == (first,)
  assert model.deepest([last, first]) == last
  assert model.index(first) < model.index(last)
  with pytest.raises(base.UnknownLayerError, match=first):
    model.layer("no_such_layer")
  return full


def test_toy_cnn_satisfies_protocol(toy):
  model, params = toy
  full = check_protocol(model, params, model.input_size)
  assert model.layer("conv2").depth == 16 and model.layer("conv2").stride == 4
  assert model.layer("conv1_pre_relu").spatial
  assert not model.layer("logits").spatial
  np.testing.assert_array_equal(full["conv2"], jnp.maximum(full["conv2_pre_relu"], 0))
  assert model.layer_names == ("conv1_pre_relu", "conv1", "conv2_pre_relu",
                               "conv2", "logits")


def test_toy_cnn_stops_early(toy):
  model, params = toy
  x = jnp.zeros((1, 32, 32, 3))
  jaxpr = jax.make_jaxpr(lambda p, x: model.apply(p, x, layers=("conv1",)))(params, x)
  convs = [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
  assert len(convs) == 1
  assert set(model.apply(params, x, layers=("conv1",))) == {"conv1"}


def test_toy_cnn_gradients_flow_to_input(toy):
  """What feature visualization needs: d(channel mean)/d(image)."""
  model, params = toy
  x = jnp.full((1, 32, 32, 3), 0.5)
  objective = lambda x: model.apply(params, x, layers=("conv2",))["conv2"][..., 3].mean()
  grad = jax.grad(objective)(x)
  assert grad.shape == x.shape and float(jnp.abs(grad).sum()) > 0


def test_googlenet_satisfies_protocol(googlenet):
  model, params = googlenet
  check_protocol(model, params, 64)
