"""Renderer-based classic visualizations: class models, activation grids and
neuron interplay. Real weights only for the class model (64 px, few steps);
the rest uses the toy CNN."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax import images as images_lib
from atlasjax.classic import synthesis
from atlasjax.optvis import objectives
from atlasjax.optvis import render as render_lib

GOLDFISH, WOK = 1, 909
TOY_LAYER = "conv2"
TOY_STEPS = 40


def _toy_config(**kw):
  base = dict(size=32, steps=TOY_STEPS, lr=0.05, transforms="none",
              redirect_relu_steps=0)
  base.update(kw)
  return render_lib.RenderConfig(**base)


def _random_images(config, n, seed=1):
  image_param = config.image_param()
  keys = jax.random.split(jax.random.PRNGKey(seed), n)
  return np.concatenate([np.asarray(image_param.to_rgb(image_param.init(k)))
                         for k in keys])


def test_class_model_raises_logit_and_is_batch_independent(googlenet):
  model, params = googlenet
  config = render_lib.RenderConfig(size=64, steps=16)
  objective = synthesis.ClassModelObjective(l2_weight=1e-3)
  key = jax.random.PRNGKey(3)
  both = synthesis.render_class_models(model, params, [GOLDFISH, WOK], config,
                                       key, objective)
  assert both.images.shape == (2, 64, 64, 3)
  final = synthesis.class_logits(model, params, both.images, [GOLDFISH, WOK])
  start = synthesis.class_logits(model, params, _random_images(config, 2),
                                 [GOLDFISH, WOK])
  assert np.all(final > start + 5.0), (final, start)
  # Each image targets its own class: its class beats the other one's logit.
  swapped = synthesis.class_logits(model, params, both.images, [WOK, GOLDFISH])
  assert np.all(final > swapped), (final, swapped)
  # Same compiled program, other order: a class's image does not depend on
  # its position or its batch-mates (item id = class index).
  reordered = synthesis.render_class_models(model, params, [WOK, GOLDFISH],
                                            config, key, objective)
  np.testing.assert_array_equal(np.asarray(reordered.images[::-1]),
                                np.asarray(both.images))
  # Alone, with the same explicit chunk size (so the same compiled program):
  # bit-identical to its image in the batch.
  fixed = dataclasses.replace(config, chunk_size=2)
  alone = synthesis.render_class_models(model, params, [WOK], fixed, key,
                                        objective)
  np.testing.assert_array_equal(np.asarray(alone.images[0]),
                                np.asarray(both.images[1]))


def test_class_model_objective_penalties():
  acts = {"logits": jnp.array([[0.0, 2.0, 5.0]]),
          objectives.INPUT: jnp.full((1, 4, 4, 3), 0.5).at[0, 0, 0, 0].set(1.0)}
  plain = synthesis.ClassModelObjective()(2)(acts)
  penalised = synthesis.ClassModelObjective(l2_weight=1.0, tv_weight=1.0)(2)(acts)
  assert float(plain) == pytest.approx(5.0)
  # l2 about grey: sqrt(0.25); tv: two neighbour differences of 0.5.
  assert float(penalised) == pytest.approx(5.0 - 0.5 - 1.0, abs=1e-3)


@pytest.fixture(scope="module")
def toy_grid(toy, sample_dir):
  model, params = toy
  photo = images_lib.load_eval(sample_dir / "n01443537_goldfish.jpg",
                               resize=16, crop=16)
  config = _toy_config(size=16, steps=32)
  calls = []
  real = render_lib.Renderer.run_chunk

  def spy(self, params, key, item_ids, args, chunk_index=0):
    calls.append(item_ids.shape[0])
    return real(self, params, key, item_ids, args, chunk_index)

  render_lib.Renderer.run_chunk = spy
  try:
    grid = synthesis.render_activation_grid(model, params, photo, TOY_LAYER,
                                            config, jax.random.PRNGKey(0),
                                            cossim_pow=1.0)
  finally:
    render_lib.Renderer.run_chunk = real
  return model, params, photo, grid, calls


def test_activation_grid_one_render_and_layout(toy_grid):
  model, params, photo, grid, calls = toy_grid
  h, w = photo.shape[0] // 4, photo.shape[1] // 4     # conv2 has stride 4
  assert grid.vectors.shape == (h, w, 16)
  assert grid.icons.shape == (h, w, 16, 16, 3)
  assert grid.values.shape == (h, w)
  np.testing.assert_allclose(grid.vectors, synthesis.activation_vectors(
      model, params, photo, TOY_LAYER), rtol=1e-5)
  figure = synthesis.activation_grid_figure(photo, grid)
  # photo | grid at the icon grid's full resolution (16 px icons, 1 px gaps).
  assert figure.shape[0] == h * 17 + 1 + 2 * 4 and figure.shape[2] == 3
  # One render call with all H·W items in one chunk.
  assert calls == [h * w]


def test_activation_grid_icons_target_their_position(toy_grid):
  model, params, _, grid, _ = toy_grid
  n = grid.vectors.shape[0] * grid.vectors.shape[1]
  cos = synthesis.icon_cosines(model, params, grid.icons, TOY_LAYER,
                               grid.vectors.reshape(n, -1))
  own = np.diag(cos)
  others = (cos.sum(axis=1) - own) / (n - 1)
  assert own.mean() > others.mean() + 0.02, (own.mean(), others.mean())
  assert (own > others).mean() >= 0.75, (own, others)


def test_diversity_makes_images_less_similar(toy):
  model, params = toy
  # Same channel and item id twice: identical starting images, weights 1e2, 0.
  result = synthesis.render_diversity(
      model, params, TOY_LAYER, channels=[3, 3], k=3, config=_toy_config(),
      key=jax.random.PRNGKey(0), weight=[1e2, 0.0])
  assert result.images.shape == (2, 3, 32, 32, 3)
  sim_diverse, sim_plain = (
      synthesis.gram_similarity(model, params, images, TOY_LAYER)
      for images in result.images)
  assert sim_diverse < sim_plain - 0.01, (sim_diverse, sim_plain)


def test_interpolation_weights_frame_zero_is_channel_a():
  make = synthesis.InterpolationObjective(TOY_LAYER, TOY_LAYER,
                                          alignment_weight=0.0)
  obj = make(jnp.array([2, 5]))
  frames = 4
  zeros = jnp.zeros((frames, 2, 2, 8))
  only_b_first = {TOY_LAYER: zeros.at[0, ..., 5].set(1.0)}
  only_a_first = {TOY_LAYER: zeros.at[0, ..., 2].set(1.0)}
  only_b_last = {TOY_LAYER: zeros.at[-1, ..., 5].set(1.0)}
  assert float(obj(only_b_first)) == pytest.approx(0.0)
  assert float(obj(only_a_first)) == pytest.approx(1.0)
  assert float(obj(only_b_last)) == pytest.approx(1.0)


def test_interpolation_frames_share_structure(toy):
  model, params = toy
  frames = 5
  result = synthesis.render_interpolation(
      model, params, TOY_LAYER, 3, TOY_LAYER, 11, frames, _toy_config(),
      jax.random.PRNGKey(0))
  images = np.asarray(result.images[0])
  assert images.shape == (frames, 32, 32, 3)
  dist = lambda i, j: float(np.sqrt(np.mean((images[i] - images[j]) ** 2)))
  ends = dist(0, frames - 1)
  neighbours = np.mean([dist(i, i + 1) for i in range(frames - 1)])
  assert ends > 0.01, ends
  assert neighbours < ends, (neighbours, ends)
  # The channel weights move from A to B along the frames.
  means = synthesis.channel_means(model, params, images, TOY_LAYER, [3, 11])
  assert means[0, 0] - means[0, 1] > means[-1, 0] - means[-1, 1], means


def test_channel_sum_activates_both(toy):
  model, params = toy
  a, b = 3, 11
  config = _toy_config()
  result = synthesis.render_channel_sum(model, params, TOY_LAYER, a, TOY_LAYER,
                                        b, config, jax.random.PRNGKey(0))
  assert result.images.shape == (3, 32, 32, 3)
  names = dict(zip(synthesis.CHANNEL_SUM_NAMES, np.asarray(result.images)))
  means = synthesis.channel_means(model, params, np.stack(list(names.values())),
                                  TOY_LAYER, [a, b])
  random = synthesis.channel_means(model, params, _random_images(config, 4),
                                   TOY_LAYER, [a, b]).mean(axis=0)
  summed = means[2]
  assert np.all(summed > random), (summed, random)
  # Alone, each channel beats the other one's image on its own channel.
  assert means[0, 0] > means[1, 0] and means[1, 1] > means[0, 1], means


def test_grid_icon_objective_hashes_by_value():
  w = np.eye(4, dtype=np.float32)
  a = synthesis.grid_icon_objective("conv2", w, 2.0)
  b = synthesis.grid_icon_objective("conv2", w.copy(), 2.0)
  c = synthesis.grid_icon_objective("conv2", 2 * w, 2.0)
  assert a == b and hash(a) == hash(b)       # reuses the compiled renderer
  assert a != c and a != synthesis.grid_icon_objective("conv2", None, 2.0)
  acts = {"conv2": jnp.ones((1, 3, 3, 4))}
  vec = jnp.array([1.0, 0.0, 0.0, 0.0])
  np.testing.assert_allclose(float(a(vec)(acts)), float(
      objectives.direction_neuron_cossim("conv2", vec, cossim_pow=2.0,
                                         whitening=w)(acts)), rtol=1e-6)
