"""Dictionary features as objectives: the encoder response equals the
interchange formula's pre-TopK activation, and a batched render raises
every feature's objective."""

import jax.numpy as jnp
import numpy as np
import pytest

import flax_cnn
from atlasjax.features import objectives as feature_objectives
from atlasjax.features import sae
from atlasjax.optvis import render


def _dictionary(c=12, f=5, k=2, seed=0):
  rng = np.random.default_rng(seed)
  dec = rng.normal(size=(f, c))
  dec /= np.linalg.norm(dec, axis=1, keepdims=True)
  return sae.Dictionary(jnp.asarray(rng.normal(size=(c, f)), jnp.float32),
                        jnp.asarray(rng.normal(size=f) * 0.1, jnp.float32),
                        jnp.asarray(dec, jnp.float32),
                        jnp.asarray(rng.normal(size=c) * 0.1, jnp.float32), k, 0.7)


def test_response_is_the_mean_pre_topk_activation():
  d = _dictionary()
  acts = np.random.default_rng(1).uniform(size=(1, 4, 4, 12)).astype(np.float32)
  flat = acts.reshape(-1, 12)
  pre = np.maximum((flat / 0.7 - np.asarray(d.decoder_bias)) @ np.asarray(d.encoder)
                   + np.asarray(d.encoder_bias), 0)
  for f in range(5):
    got = feature_objectives.feature_objective(d, "x", f, "response")({"x": acts})
    assert float(got) == pytest.approx(pre[:, f].mean(), rel=1e-5, abs=1e-6)
  direction = feature_objectives.feature_objective(d, "x", 2)({"x": acts})
  assert float(direction) == pytest.approx(
      (flat @ np.asarray(d.decoder)[2]).mean(), rel=1e-5)


def test_batched_render_raises_every_feature():
  # "response" here; "direction" is objectives.direction, which
  # tests/features/test_nmf.py renders through the neuron groups.
  model, params = flax_cnn.tiny_cnn()
  d = _dictionary()
  d = d._replace(encoder_bias=d.encoder_bias + 1.0)   # every feature responds
  result = feature_objectives.render_features(
      model, params, d, "stage2", kind="response",
      config=render.RenderConfig(size=32, steps=8, lr=0.1, transforms="none"))
  losses = np.asarray(result.losses)
  assert result.images.shape == (5, 32, 32, 3)
  assert (losses[:, -1] < losses[:, 0]).all(), losses


def test_a_dictionary_for_another_width_is_a_clear_error():
  model, params = flax_cnn.tiny_cnn()
  with pytest.raises(ValueError, match="reads 12 channels; stage1 has 8"):
    feature_objectives.render_features(model, params, _dictionary(), "stage1")
