"""Custom parameterizations and transforms go wherever a built-in name goes."""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax.optvis import objectives as O
from atlasjax.optvis import param as param_lib
from atlasjax.optvis import registry
from atlasjax.optvis import render
from atlasjax.optvis import transform as transform_lib


def grey_param(size, batch, *, decorrelate, alpha):
  """A grey-scale pixel image: one channel shown as three."""
  del decorrelate, alpha
  h, w = param_lib.size_hw(size)
  return param_lib.ImageParam(
      init=lambda key: 0.01 * jax.random.normal(key, (batch, h, w, 1)),
      to_rgb=lambda raw: jnp.repeat(jax.nn.sigmoid(raw), 3, axis=-1))


def crop_transforms(size, *, alpha):
  """A random 3/4 crop: a custom (key, image) -> image with a static shape."""
  del alpha
  out = 3 * size // 4

  def apply(key, image):
    start = jax.random.randint(key, (2,), 0, size - out + 1)
    return jax.lax.dynamic_slice(image, (start[0], start[1], 0),
                                 (out, out, image.shape[-1]))
  return apply


@pytest.fixture(autouse=True)
def _registered():
  registry.register_param("grey", grey_param)
  registry.register_transforms("crop", crop_transforms)


def test_builtin_names_are_the_code_paths_names():
  assert registry.BUILTIN_PARAMS == param_lib.KINDS
  assert registry.BUILTIN_TRANSFORMS == transform_lib.PRESETS


def test_registered_pieces_render_by_name(toy):
  model, params = toy
  cfg = render.RenderConfig(size=24, steps=6, lr=0.1, param="grey", transforms="crop",
                            redirect_relu_steps=0)
  assert render.check(model, params, lambda c: O.channel("conv2", c), np.arange(2),
                      cfg)["conv2"][1:3] == (5, 5)   # 18 px crops, stride 4
  result = render.render(model, params, lambda c: O.channel("conv2", c), np.arange(2), cfg)
  images = np.asarray(result.images)
  np.testing.assert_array_equal(images[..., 0], images[..., 2])   # grey
  assert np.all(np.asarray(result.losses[:, -1]) < np.asarray(result.losses[:, 0]))


def test_import_path_and_unknown_name(tmp_path, monkeypatch):
  (tmp_path / "mylab_pieces.py").write_text(textwrap.dedent("""
      from atlasjax.optvis import param
      def tiny(size, batch, *, decorrelate, alpha):
        return param.image(size, batch, "pixel", decorrelate=decorrelate, alpha=alpha)
  """))
  monkeypatch.syspath_prepend(str(tmp_path))
  p = render.RenderConfig(size=16, param="mylab_pieces:tiny").image_param()
  assert param_lib.output_shape(p) == (1, 16, 16, 3)
  with pytest.raises(registry.RegistryError, match="known: fft, pixel.*grey"):
    render.RenderConfig(param="nope").image_param()
  with pytest.raises(registry.RegistryError, match="cannot import 'no_such_module'"):
    registry.check("transforms", "no_such_module:x")
  with pytest.raises(registry.RegistryError, match="is a built-in"):
    registry.register_param("fft", grey_param)


def test_render_cache_follows_what_a_name_means():
  cfg = render.RenderConfig(param="grey")
  first = render.custom_pieces(cfg)
  registry.register_param("grey", grey_param)
  assert render.custom_pieces(cfg) == first          # the same code: a hit
  registry.register_param("grey", lambda size, batch, **kw: grey_param(size, 2 * batch, **kw))
  assert render.custom_pieces(cfg) != first          # other code: a new program
