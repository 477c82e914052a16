"""Feature accentuation on the tiny custom CNN."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax.optvis import accentuate as acc
from atlasjax.optvis import objectives as obj

SIZE = 24
CONFIG = dataclasses.replace(acc.DEFAULT_CONFIG, steps=8, chunk_size=2,
                             cpu_rewrite=False)


def _photos(n=2):
  coarse = jax.random.uniform(jax.random.PRNGKey(1), (n, 6, 6, 3))
  return jax.image.resize(coarse, (n, SIZE, SIZE, 3), "linear")


def _run(toy, weight, photos=None, channels=(1, 2), item_ids=None):
  model, params = toy
  photos = _photos() if photos is None else photos
  return acc.accentuate(model, params, photos, lambda c: obj.channel("conv2", c),
                        jnp.asarray(channels), "conv1", weight, CONFIG)


def test_the_parameterization_starts_at_the_photo():
  photos = _photos()
  raw = acc.photo_spectrum(photos)
  images = jax.jit(jax.vmap(acc.photo_param(SIZE).to_rgb))(raw)[:, 0]
  np.testing.assert_allclose(np.asarray(images), np.asarray(photos), atol=1e-5)


def test_weights_trade_the_feature_against_the_photo(toy):
  free, held = _run(toy, 0.0), _run(toy, 1e6)
  # Without the regularizer the feature rises and the layer drifts away ...
  assert np.all(np.asarray(free.gain) > 0.0)
  assert np.all(np.asarray(free.distance) > 0.1)
  # ... at λ → ∞ the image stays at the photo (Adam's steps are lr-sized, so
  # it oscillates around it within a few hundredths).
  assert np.all(np.asarray(held.distance) < 0.25 * np.asarray(free.distance))
  assert float(jnp.abs(held.images - held.photos).max()) < 0.05
  assert float(jnp.abs(free.images - free.photos).max()) > 0.1


def test_batched_equals_single(toy):
  both = _run(toy, jnp.array([0.0, 1.0]))
  one = _run(toy, jnp.array([1.0]), photos=_photos()[1:], channels=(2,))
  np.testing.assert_allclose(np.asarray(one.images[0]), np.asarray(both.images[1]),
                             atol=1e-5)
  np.testing.assert_allclose(float(one.gain[0]), float(both.gain[1]), rtol=1e-4)


def test_bfloat16_target_rounds_like_the_render(toy):
  """In bfloat16 the target activations come from the bfloat16 network too:
  at the photo the distance term is zero (a float32 target put ~25 of
  rounding noise into the loss at λ = 10⁶), and the result stays close to
  float32's."""
  out = {}
  for precision in ("float32", "bfloat16"):
    config = dataclasses.replace(CONFIG, precision=precision)
    out[precision] = acc.accentuate(
        toy[0], toy[1], _photos(), lambda c: obj.channel("conv2", c),
        jnp.asarray((1, 2)), "conv1", jnp.array([0.0, 1e6]), config)
  f32, bf16 = out["float32"], out["bfloat16"]
  np.testing.assert_allclose(float(bf16.losses[1, 0]), -float(bf16.objective_start[1]),
                             atol=1e-3)
  assert np.all(np.isfinite(np.asarray(bf16.images)))
  assert float(bf16.gain[0]) > 0.0
  # Measured: mean |Δimage| 0.001, gains 0.4 % apart.
  assert float(jnp.abs(f32.images - bf16.images).mean()) < 0.01
  np.testing.assert_allclose(bf16.gain[0], f32.gain[0], rtol=0.05)
