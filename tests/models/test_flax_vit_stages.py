"""Every stage on a Vision Transformer from ``from_flax`` (issue 19, item 4):
render (rising objectives, through the resampling of a fixed-size ViT),
collect with attributions → layout → atlas → viewer, Grad-CAM on the token
grid, dataset examples, Microscope pages — and the one-line errors where a
method does not apply (CAM without a GAP head, expanded weights through
attention). Tiny random ViTs from ``tests/vit_toy.py``."""

from __future__ import annotations

import json
import os
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import vit_toy as toy
from atlasjax import circuits, microscope, models
from atlasjax import images as images_lib
from atlasjax.atlas import collect, layout, pipeline, render_atlas
from atlasjax.classic import attribution, examples
from atlasjax.optvis import objectives, render

HIDDEN = "block1/fc2:input"      # Ghiasi et al.'s layer: the MLP's GELU output


@pytest.fixture(scope="module")
def vit():
  module, variables = toy.linen_vit()
  model, params = models.from_flax(module, variables, input_size=toy.SIZE)
  return model, params, module, variables


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  folder = tmp_path_factory.mktemp("photos")
  rng = np.random.default_rng(0)
  for i in range(8):
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), np.uint8)).save(folder / f"p{i}.jpg")
  return images_lib.list_images(folder)


def _batch(n=2, seed=3):
  images = jax.random.uniform(jax.random.PRNGKey(seed), (n, toy.SIZE, toy.SIZE, 3))
  return images, jnp.arange(n) % toy.CLASSES


@pytest.mark.parametrize("dialect", ["linen", "nnx"])
def test_render_rising_objectives_through_resampling(vit, dialect):
  """Channel objectives on the patch grid rise; the 40 px render reaches the
  fixed-size ViT resampled to 32 px."""
  if dialect == "linen":
    model, params = vit[:2]
    layer = HIDDEN
  else:
    model, params = models.from_flax(toy.nnx_vit(), input_size=toy.SIZE)
    layer = "blocks/1/mlp/fc2:input"
  config = render.RenderConfig(size=40, steps=12, transforms="none", lr=0.05)
  # Channels 2 and 3: this random ViT's units 0 and 1 of block1's MLP sit at
  # GELU's minimum (zero gradient), where no optimiser moves.
  result = render.render(model, params, lambda c: objectives.channel(layer, c),
                         args=jnp.arange(2, 4), config=config, key=jax.random.PRNGKey(0))
  assert result.images.shape == (2, 40, 40, 3)
  losses = np.asarray(result.losses)
  assert (losses[:, -1] < losses[:, 0] - 0.05).all()      # the unit's mean rose


def test_atlas_pipeline_with_attributions_and_viewer(vit, sample_dir, tmp_path):
  model, params = vit[:2]
  images = tmp_path / "photos"
  images.mkdir()
  for path in sorted(sample_dir.glob("*.jpg"))[::100][:6]:
    os.symlink(path, images / path.name)
  config = pipeline.PipelineConfig(
      collect=collect.CollectConfig(layers=("block0",), crops_per_image=4,
                                    image_size=48, batch_size=24, shard_images=6),
      layout=layout.LayoutConfig(layer="block0", n_neighbors=6),
      atlas=render_atlas.AtlasConfig(layer="block0", grid_sizes=(3,), min_density=(1,),
                                     icon_size=24, steps=4, attempts=1, chunk_size=9),
      viewer=True)
  path = pipeline.run(config, model, params, images, tmp_path / "work")
  atlas = json.loads(path.read_text())
  assert atlas["layer"] == "block0" and len(atlas["grids"][0]["cells"]) >= 2
  collection = collect.Collection.open(tmp_path / "work")
  loaded = collection.load(["vectors/block0", "attributions/block0", "positions/block0"])
  assert loaded["vectors/block0"].shape == (24, toy.WIDTH)
  assert np.abs(np.asarray(loaded["attributions/block0"], np.float32)).max() > 0
  positions = loaded["positions/block0"]
  assert positions.min() >= 1 and positions.max() <= toy.GRID - 2   # on the patch grid
  assert any((tmp_path / "work").rglob("index.html"))


def test_grad_cam_on_the_token_grid_matches_the_module(vit):
  """Grad-CAM at block1 (a CLS head never reads the *last* block's patch tokens,
  so Grad-CAM there is zero: use a layer before the last block's attention)."""
  model, params, module, variables = vit
  images, classes = _batch()
  maps = attribution.grad_cam(model, params, images, classes, "block1")
  acts = model.apply(params, images, layers=("block1",))["block1"]
  _, state = jax.jit(lambda v, x: module.apply(v, x, capture_intermediates=True))(
      variables, images)
  cls = state["intermediates"]["block1"]["__call__"][0][:, :1]

  def score(grid):                  # logits from block1's patch tokens, by hand
    x = jnp.concatenate([cls, grid.reshape(2, toy.GRID * toy.GRID, -1)], 1)
    p = variables["params"]
    x = nn.LayerNorm().apply({"params": p["norm"]},
                             toy.LinenBlock().apply({"params": p["block2"]}, x))
    return nn.Dense(toy.CLASSES).apply({"params": p["head"]}, x[:, 0])[
        jnp.arange(2), classes].sum()

  grads = jax.jit(jax.grad(score))(acts)
  expected = jax.nn.relu(jnp.einsum("bhwc,bc->bhw", acts, grads.mean(axis=(1, 2))))
  assert maps.shape == (2, toy.GRID, toy.GRID)
  np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-7)
  assert float(maps.max()) > 0


def test_cam_without_a_gap_head_is_one_clear_line(vit):
  model, params = vit[:2]
  images, classes = _batch()
  with pytest.raises(ValueError) as e:
    attribution.model_cam(model, params, images, classes)
  assert "grad_cam" in str(e.value) and "\n" not in str(e.value)


def test_dataset_examples_on_the_patch_grid(vit, photos):
  model, params = vit[:2]
  config = examples.ExamplesConfig(layer=HIDDEN, k=3, batch_size=4)
  found = examples.collect(model, params, photos, config,
                           examples.channel_directions([0, 5], toy.MLP))
  assert found.grid == (toy.GRID, toy.GRID)
  # The photos are resampled to 32 px: a grid position spans image_size / 4 px.
  assert found.stride == found.image_size[0] / toy.GRID
  best = int(found.top.images[0, 0])
  image = images_lib.load_eval(photos[best])[None]
  acts = model.apply(params, jnp.asarray(image), layers=(HIDDEN,))[HIDDEN][0, ..., 0]
  np.testing.assert_allclose(found.top.scores[0, 0], acts.max(), rtol=1e-4)


def test_expanded_weights_inside_the_mlp_and_not_through_attention(vit):
  model, params = vit[:2]
  w = circuits.expanded_weights(model, params, HIDDEN, "block1/fc2")
  kernel = np.asarray(params["params"]["block1"]["fc2"]["kernel"])    # [MLP, WIDTH]
  assert w.shape == (toy.WIDTH, 1, 1, toy.MLP)                      # a 1×1 kernel
  np.testing.assert_allclose(w[:, 0, 0, :], kernel.T, rtol=1e-5, atol=1e-6)
  with pytest.raises(circuits.NoKernelError) as e:
    circuits.expanded_weights(model, params, "block1/ln1", "block1/attn/out")
  assert "attention" in str(e.value) and "\n" not in str(e.value)


def test_microscope_pages_skip_connections_through_attention(vit, photos, tmp_path):
  model, params = vit[:2]
  config = microscope.MicroscopeConfig(layers=("block1/attn/out",), size=32, steps=3,
                                       chunk_size=16, examples=2, links=2, tile=32,
                                       batch_size=4, transforms="none")
  logged = []
  summary = microscope.build(model, params, config, tmp_path, photos, log=logged.append)
  assert summary["pairs"] == [["block1/ln1", "block1/attn/out"],
                              ["block1/attn/out", "block1/attn"]]
  assert len(list((tmp_path / "weights").rglob("*.npy"))) == 1     # attn/out -> attn only
  assert any("no expanded weights block1/ln1 -> block1/attn/out" in l for l in logged)
  assert pathlib.Path(summary["index"]).is_file()
  assert (tmp_path / "microscope" / "data" / "block1" / "attn" / "out.js").is_file()
