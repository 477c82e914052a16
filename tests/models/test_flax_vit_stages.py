"""Every stage on a Vision Transformer from ``from_flax`` (issue 19, item 4):
render (rising objectives, through the resampling of a fixed-size ViT),
collect with attributions, Grad-CAM on the token grid, dataset examples,
Microscope connections and pages — and the one-line errors where a
method does not apply (CAM without a GAP head, expanded weights through
attention). Tiny random ViTs from ``tests/vit_toy.py``."""

from __future__ import annotations

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
from atlasjax.atlas import collect
from atlasjax.classic import attribution, examples
from atlasjax.microscope import pipeline as microscope_pipeline
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


def test_collect_with_attributions_samples_the_patch_grid(vit, photos, tmp_path):
  """collect.run on a token layer: positions on the 4×4 patch grid (never the
  border), vectors and attributions per crop. Layout, atlas and viewer read
  only these vectors (the CNN atlas test in test_flax_adapter.py runs them)."""
  model, params = vit[:2]
  config = collect.CollectConfig(layers=("block0",), crops_per_image=2,
                                 image_size=48, batch_size=16, shard_images=8)
  folder = pathlib.Path(photos[0]).parent
  manifest = collect.run(config, model, params, folder, tmp_path / "work")
  assert manifest["samples"] == 16
  loaded = collect.Collection.open(tmp_path / "work").load(
      ["vectors/block0", "attributions/block0", "positions/block0"])
  assert loaded["vectors/block0"].shape == (16, toy.WIDTH)
  assert loaded["attributions/block0"].shape == (16, toy.CLASSES)
  assert np.abs(np.asarray(loaded["attributions/block0"], np.float32)).max() > 1e-4
  positions = loaded["positions/block0"]
  assert positions.min() >= 1 and positions.max() <= toy.GRID - 2


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


def test_microscope_pages_skip_connections_through_attention(vit, tmp_path):
  """The Microscope's ViT-specific parts: pairs through attention get no
  weights (logged), module-path layer names get their page scripts."""
  model, params = vit[:2]
  config = microscope.MicroscopeConfig(layers=(), links=2)
  pairs = microscope.layer_pairs(model, ("block1/attn/out",))
  assert pairs == (("block1/ln1", "block1/attn/out"), ("block1/attn/out", "block1/attn"))
  logged = []
  weights = microscope_pipeline.compute_weights(model, params, pairs, tmp_path, logged.append)
  assert list(weights) == [("block1/attn/out", "block1/attn")]     # the identity
  np.testing.assert_allclose(weights[pairs[1]][:, 0, 0, :], np.eye(toy.WIDTH), atol=1e-5)
  assert any("no expanded weights block1/ln1 -> block1/attn/out" in l for l in logged)
  layers = microscope.site_layers(model, ("block1/attn/out",))
  index = microscope.write_site(model, config, tmp_path, layers, weights, [])
  assert index.is_file()
  assert (tmp_path / "microscope" / "data" / "block1" / "attn" / "out.js").is_file()


def test_atlas_and_viewer_on_the_patch_grid(vit, photos, tmp_path, linear_umap):
  """pipeline.run on the MLP hidden layer of a ViT: collect (attributions) →
  layout → grid → icons (rendered through the fixed-size resampling) → viewer."""
  from atlasjax.atlas import layout, pipeline, render_atlas  # pylint: disable=g-import-not-at-top
  model, params = vit[:2]
  config = pipeline.PipelineConfig(
      collect=collect.CollectConfig(layers=(HIDDEN,), crops_per_image=2,
                                    image_size=48, batch_size=16, shard_images=8),
      layout=layout.LayoutConfig(layer=HIDDEN, n_neighbors=4),
      atlas=render_atlas.AtlasConfig(layer=HIDDEN, grid_sizes=(2,),
                                     min_density=(1,), icon_size=toy.SIZE,
                                     steps=4, attempts=1, chunk_size=4),
      viewer=True)
  work = tmp_path / "work"
  path = pipeline.run(config, model, params, pathlib.Path(photos[0]).parent, work)
  import json  # pylint: disable=g-import-not-at-top
  atlas = json.loads(path.read_text())
  (grid,) = atlas["grids"]
  assert atlas["layer"] == HIDDEN and len(grid["cells"]) >= 2
  icons = [np.asarray(Image.open(work / c["icon"])) for c in grid["cells"]]
  assert all(i.shape[:2] == (toy.SIZE, toy.SIZE) and i.std() > 0 for i in icons)
  assert (work / "index.html").is_file()
