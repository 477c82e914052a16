"""``from_flax``: linen and NNX modules the project has never seen go through
the adapter — inferred metadata, truncated forward, perturbation, no layer
table — and then through render → collect with attributions → layout → atlas."""

from __future__ import annotations

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from atlasjax import models
from atlasjax.atlas import collect, layout, pipeline, render_atlas
from atlasjax.models import base, flax_adapter
from atlasjax.optvis import objectives, render

SIZE = 32


class LinenStage(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    return nn.relu(nn.Conv(self.features, (3, 3), strides=2, name="conv")(x))


class LinenCNN(nn.Module):
  """A small CNN written the way flax's examples write them."""

  @nn.compact
  def __call__(self, x):
    x = LinenStage(8, name="stage1")(x)
    x = LinenStage(16, name="stage2")(x)
    return nn.Dense(10, name="head")(x.mean(axis=(1, 2)))


class NNXStage(nnx.Module):

  def __init__(self, cin, cout, rngs):
    self.conv = nnx.Conv(cin, cout, (3, 3), strides=2, rngs=rngs)

  def __call__(self, x):
    return nnx.relu(self.conv(x))


class NNXCNN(nnx.Module):

  def __init__(self, rngs):
    self.stage1 = NNXStage(3, 8, rngs)
    self.stage2 = NNXStage(8, 16, rngs)
    self.head = nnx.Linear(16, 10, rngs=rngs)

  def __call__(self, x):
    return self.head(self.stage2(self.stage1(x)).mean(axis=(1, 2)))


class DictNet(nn.Module):
  """big_vision style: the module returns its own named outputs."""

  @nn.compact
  def __call__(self, x):
    out = {}
    out["features"] = x = nn.relu(nn.Conv(4, (3, 3), strides=4)(x))
    out["pre_logits"] = x = x.mean(axis=(1, 2))
    out["logits"] = nn.Dense(5)(x)
    return out


def _linen():
  module = LinenCNN()
  variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3)))
  return models.from_flax(module, variables, input_size=SIZE,
                          relu_twins=[("stage1", "stage1/conv"), ("stage2", "stage2/conv")])


def _nnx(seed=0):
  return models.from_flax(NNXCNN(nnx.Rngs(seed)), input_size=SIZE,
                          relu_twins=[("stage2", "stage2/conv")])


EXPECTED = (("stage1/conv", 8, 2), ("stage1", 8, 2), ("stage2/conv", 16, 4),
            ("stage2", 16, 4), ("head:input", 16, 0), ("head", 10, 0), ("logits", 10, 0))


@pytest.mark.parametrize("build", [_linen, _nnx], ids=["linen", "nnx"])
def test_metadata_is_inferred(build):
  model, params = build()
  assert tuple((l.name, l.depth, l.stride) for l in model.layers) == EXPECTED
  assert model.default_layer == "stage2"          # the stride nearest 16
  assert model.min_size == 1                     # SAME padding never empties
  assert not model.fixed_input_size              # global pooling takes any size
  assert model.perturbable == tuple(n for n, _, _ in EXPECTED)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, SIZE, SIZE, 3))
  full = jax.jit(model.apply)(params, x)
  np.testing.assert_allclose(full["stage2"], jnp.maximum(full["stage2/conv"], 0))
  np.testing.assert_allclose(full["logits"], full["head"])
  # The head's input, computed by a function between modules, is an output too.
  np.testing.assert_allclose(full["head:input"], full["stage2"].mean(axis=(1, 2)), rtol=1e-6)


@pytest.mark.parametrize("build", [_linen, _nnx], ids=["linen", "nnx"])
def test_truncated_forward_stops_early(build):
  model, params = build()
  x = jnp.zeros((1, SIZE, SIZE, 3))
  jaxpr = jax.make_jaxpr(lambda p, x: model.apply(p, x, layers=("stage1",)))(params, x)
  convs = [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
  assert len(convs) == 1
  assert set(model.apply(params, x, layers=("stage1",))) == {"stage1"}


def _downstream_logits(build_kind, params, h):
  """logits as a function of stage1's output, written against the module."""
  if build_kind == "linen":
    p = params["params"]
    y = LinenStage(16).apply({"params": p["stage2"]}, h)
    return nn.Dense(10).apply({"params": p["head"]}, y.mean(axis=(1, 2)))
  module = nnx.merge(*nnx.split(NNXCNN(nnx.Rngs(0))))
  nnx.update(module, params)
  return module.head(module.stage2(h).mean(axis=(1, 2)))


@pytest.mark.parametrize("build", [_linen, _nnx], ids=["linen", "nnx"])
def test_attributions_equal_gradients_of_the_module(build):
  """collect's JVP attribution through interception == jax.jacrev of the module."""
  model, params = build()
  kind = "linen" if build is _linen else "nnx"
  images = jax.random.uniform(jax.random.PRNGKey(2), (2, SIZE, SIZE, 3))
  positions = np.array([[[3, 5], [10, 2]]], np.int32)
  out = collect.make_sample_fn(model, ("stage1",), True)(params, images, positions)
  h = model.apply(params, images, layers=("stage1",))["stage1"]
  jac = jax.jacrev(lambda h: _downstream_logits(kind, params, h))(h)  # [B, 10, B, H, W, C]
  for b, (r, c) in enumerate(positions[0]):
    expected = jac[b, :, b, r, c, :] @ h[b, r, c]
    np.testing.assert_allclose(np.asarray(out["attributions/stage1"][b], np.float32),
                               expected, rtol=3e-3, atol=3e-4)
    assert np.abs(expected).max() > 1e-3   # not vacuously zero


def test_unperturbable_model_is_refused_not_zeroed(tmp_path):
  model, params = _linen()
  frozen = base.Model(name="frozen", apply=model.apply, layers=model.layers,
                      input_size=SIZE, perturbable=())
  with pytest.raises(collect.CollectError, match="cannot be perturbed"):
    collect.run(collect.CollectConfig(layers=("stage2",), image_size=SIZE),
                frozen, params, tmp_path, tmp_path / "work")


def test_dict_outputs_are_used_as_is():
  module = DictNet()
  variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  model, params = models.from_flax(module, variables, input_size=64,
                                   layers=("features", "pre_logits", "logits"))
  assert [(l.name, l.depth, l.stride) for l in model.layers] == [
      ("features", 4, 4), ("pre_logits", 4, 0), ("logits", 5, 0)]
  x = jax.random.uniform(jax.random.PRNGKey(1), (1, 64, 64, 3))
  np.testing.assert_allclose(model.apply(params, x)["logits"],
                             module.apply(variables, x)["logits"], rtol=1e-6)


def test_input_convention_is_applied():
  module = LinenCNN()
  variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3)))
  norm = models.Normalize(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
  model, _ = models.from_flax(module, variables, input_size=SIZE, input_convention=norm)
  x = jax.random.uniform(jax.random.PRNGKey(1), (1, SIZE, SIZE, 3))
  np.testing.assert_allclose(model.apply(variables, x)["logits"],
                             module.apply(variables, (x - 0.5) / 0.25), rtol=1e-5)


def test_rebuilding_the_same_model_reuses_compiled_programs():
  """A notebook cell that rebuilds the model does not recompile."""
  (m1, p1), (m2, p2) = _linen(), _linen()
  assert m1 == m2 and hash(m1) == hash(m2) and m1.apply is not m2.apply
  (n1, _), (n2, _) = _nnx(0), _nnx(1)
  assert n1 == n2 and n1 != m1
  make = lambda c: objectives.channel("stage2", c)
  config = render.RenderConfig(size=SIZE, steps=2, transforms="none")
  assert render.build(m1, make, config) is render.build(m2, make, config)


@pytest.mark.parametrize("build", [_linen, _nnx], ids=["linen", "nnx"])
def test_render_a_channel_ascends(build):
  model, params = build()
  make = lambda c: objectives.channel("stage2", c)
  config = render.RenderConfig(size=SIZE, steps=24, transforms="none", param="pixel",
                               decorrelate=False, lr=0.05)
  result = render.render(model, params, make, args=jnp.arange(3), config=config,
                         key=jax.random.PRNGKey(0))
  assert result.images.shape == (3, SIZE, SIZE, 3)
  losses = np.asarray(result.losses)
  assert (losses[:, -1] < losses[:, 0]).all()   # the channel mean went up


@pytest.mark.parametrize("build", [_linen, _nnx], ids=["linen", "nnx"])
def test_flax_model_builds_an_atlas(build, sample_dir, tmp_path):
  """from_flax → collect (with attributions) → layout → grid → icons, no table."""
  model, params = build()
  images = tmp_path / "photos"
  images.mkdir()
  for path in sorted(sample_dir.glob("*.jpg"))[::80][:10]:
    os.symlink(path, images / path.name)
  config = pipeline.PipelineConfig(
      collect=collect.CollectConfig(layers=("stage2",), crops_per_image=4,
                                    image_size=SIZE, batch_size=16, shard_images=8),
      layout=layout.LayoutConfig(layer="stage2", n_neighbors=8),
      atlas=render_atlas.AtlasConfig(layer="stage2", grid_sizes=(3,), min_density=(1,),
                                     icon_size=SIZE, steps=8, attempts=1, chunk_size=8),
      viewer=False)
  path = pipeline.run(config, model, params, images, tmp_path / "work")
  atlas = json.loads(path.read_text())
  (grid,) = atlas["grids"]
  assert atlas["layer"] == "stage2" and len(grid["cells"]) >= 3
  collection = collect.Collection.open(tmp_path / "work")
  assert collection.manifest["samples"] == 40         # 10 photos × 4 crops
  attributions = collection.load(["attributions/stage2"])["attributions/stage2"]
  assert attributions.shape == (40, 10)
  assert np.abs(np.asarray(attributions, np.float32)).max() > 0
