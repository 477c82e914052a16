"""Objective families are keyed on structure: rebuilding one does not recompile."""

import jax
import numpy as np

from atlasjax.optvis import family
from atlasjax.optvis import objectives
from atlasjax.optvis import render

LAYER = "conv2"


def _cell(layer=LAYER, weight=1e-3):
  """What a notebook cell builds each time it runs."""
  return lambda c: objectives.channel(layer, c) - weight * objectives.total_variation()


def test_equal_structure_is_one_family_and_differences_are_not():
  assert family.keyed(_cell()) == family.keyed(_cell())
  assert hash(family.keyed(_cell())) == hash(family.keyed(_cell()))
  assert family.keyed(_cell()) != family.keyed(_cell(layer="conv1"))
  assert family.keyed(_cell()) != family.keyed(_cell(weight=2e-3))
  assert family.keyed(_cell()) != family.keyed(
      lambda c: objectives.neuron(LAYER, c) - 1e-3 * objectives.total_variation())
  a, b = np.zeros(4, np.float32), np.ones(4, np.float32)
  assert family.keyed(lambda c: objectives.direction(LAYER, a)) != family.keyed(
      lambda c: objectives.direction(LAYER, b))


def test_rebuilt_lambda_reuses_the_compiled_renderer(toy):
  model, params = toy
  config = render.RenderConfig(size=32, steps=2, transforms="none")
  args = np.arange(2)
  render.build.cache_clear()
  first = render.render(model, params, _cell(), args=args, config=config,
                        key=jax.random.PRNGKey(0))
  again = render.render(model, params, _cell(), args=args, config=config,
                        key=jax.random.PRNGKey(0))
  info = render.build.cache_info()
  assert info.misses == 1 and info.hits == 1, info
  np.testing.assert_array_equal(np.asarray(first.images), np.asarray(again.images))
  render.render(model, params, _cell(layer="conv1"), args=args, config=config)
  assert render.build.cache_info().misses == 2
  assert first._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_same_lambda_typed_at_top_level_and_in_a_function_is_one_family():
  from atlasjax.optvis import family, objectives
  top = lambda c: objectives.channel("mixed4a", c)

  def typed_inside():
    return lambda c: objectives.channel("mixed4a", c)
  assert family.keyed(top) == family.keyed(typed_inside())
  assert family.keyed(top) != family.keyed(lambda c: objectives.channel("mixed4b", c))
