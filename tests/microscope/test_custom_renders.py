"""Issue 27, item 5: the Microscope renders units with your own objective,
parameterization and transforms (registered names), and refuses bad ones
before writing anything."""

import jax
import numpy as np
import pytest

from atlasjax import microscope
from atlasjax.optvis import objectives
from atlasjax.optvis import param as param_lib
from atlasjax.optvis import registry
from atlasjax.optvis import render as render_lib
from atlasjax.optvis import transform as transform_lib


def centre_neuron(layer):
  return lambda c: objectives.neuron(layer, c)


def pixel_param(size, batch, *, decorrelate, alpha):
  return param_lib.image(size, batch, "pixel", decorrelate, alpha=alpha)


def jitter_transforms(size, *, alpha):
  del size, alpha
  return transform_lib.jitter(1)


registry.register_objective("tests_centre_neuron", centre_neuron)
registry.register_param("tests_units_pixel", pixel_param)
registry.register_transforms("tests_units_jitter", jitter_transforms)
CONFIG = microscope.MicroscopeConfig(
    layers=("conv2",), size=32, steps=3, chunk_size=16,
    objective="tests_centre_neuron", param="tests_units_pixel",
    transforms="tests_units_jitter")


def test_units_render_with_the_custom_pieces(toy, tmp_path):
  model, params = toy
  microscope.check_renders(model, CONFIG)
  microscope.render_layer(model, params, "conv2", CONFIG, tmp_path,
                          log=lambda line: None)
  with np.load(tmp_path / "renders" / "conv2" / "00000.npz") as saved:
    channels, images, values = saved["channels"], saved["images"], saved["values"]
  # What a direct render of the same family with the same pieces gives.
  expected = render_lib.render(
      model, params, centre_neuron("conv2"), channels,
      microscope.pipeline.render_config(CONFIG),
      jax.random.PRNGKey(CONFIG.seed), item_ids=channels)
  np.testing.assert_array_equal(values, np.asarray(expected.values, np.float32))
  np.testing.assert_array_equal(
      images, np.round(np.asarray(expected.images)[..., :3] * 255).astype(np.uint8))


@pytest.mark.parametrize("change, needle", [
    (dict(objective="no_such_units"), "--objective=no_such_units"),
    (dict(param="no_such_param"), "--param=no_such_param"),
    (dict(objective="os.path:join"), "--objective=os.path:join"),
])
def test_bad_pieces_are_refused_before_writing(toy, tmp_path, change, needle):
  model, params = toy
  config = microscope.MicroscopeConfig(**{**CONFIG.__dict__, **change})
  with pytest.raises(microscope.MicroscopeError, match=needle) as e:
    microscope.build(model, params, config, tmp_path / "work", [])
  assert "\n" not in str(e.value)
  assert not (tmp_path / "work").exists()
