"""Every stage on a SigLIP-shaped image tower (issue 30, item 3): a tiny
two-tower checkpoint in big_vision's layout (scanned MAP tower with an image
head, ``two_towers``' ``out_dim``) loaded through ``models.load("big_vision")``:
renders of MLP hidden units and of the MAP head's pooled vector, collect +
atlas on the patch grid, Grad-CAM on the token grid (a MAP head reads the
last block's patch tokens, unlike a CLS head), the Microscope on
``/``-named layers (in the browser) and a dictionary. The stages themselves
are tested on the toy ViT in test_flax_vit_stages.py; these check that a
SigLIP tower reaches them."""

from __future__ import annotations

import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import big_vision_files as files
from atlasjax import images as images_lib
from atlasjax import microscope, models
from atlasjax.atlas import collect
from atlasjax.classic import attribution
from atlasjax.features import pipeline as features_pipeline
from atlasjax.features import train as features_train
from atlasjax.models import vit
from atlasjax.optvis import objectives, render

WIDTH, MLP, HEADS, CLASSES = 16, 32, 2, 6
HIDDEN = "block1/mlp/fc2:input"
POOLED = "map_head/pooled"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def tower(tmp_path_factory):
  shapes = files.two_tower(files.vit_layout(WIDTH, 2, MLP, HEADS, classes=CLASSES))
  path = files.write(tmp_path_factory.mktemp("siglip"), "tower.npz",
                     files.random_arrays(shapes, seed=1))
  model, params = models.load("big_vision", weights=path)
  return model, params


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  folder = tmp_path_factory.mktemp("photos")
  rng = np.random.default_rng(0)
  for i in range(10):
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), np.uint8)).save(folder / f"p{i}.jpg")
  return images_lib.list_images(folder)


@pytest.mark.parametrize("layer", [HIDDEN, POOLED])
def test_renders_of_mlp_units_and_the_pooled_vector_rise(tower, layer):
  model, params = tower
  config = render.RenderConfig(size=files.SIZE, steps=10, transforms="none", lr=0.05)
  result = render.render(model, params, lambda c: objectives.channel(layer, c),
                         args=jnp.arange(2, 4), config=config, key=jax.random.PRNGKey(0))
  losses = np.asarray(result.losses)
  assert (losses[:, -1] < losses[:, 0] - 0.02).all(), losses[:, [0, -1]]


def test_grad_cam_on_the_last_block_through_the_map_head(tower):
  """Grad-CAM at the last block equals the formula with the gradient taken
  through the MAP head by hand (norm → MAPHead → head), and is not zero."""
  model, params = tower
  images = jax.random.uniform(jax.random.PRNGKey(3), (2, files.SIZE, files.SIZE, 3))
  classes = jnp.array([1, 4])
  maps = attribution.grad_cam(model, params, images, classes, "block1")
  acts = model.apply(params, images, layers=("block1",))["block1"]
  p = params["params"]

  def score(grid):
    x = nn.LayerNorm(epsilon=vit.LAYERNORM_EPSILON).apply(
        {"params": p["norm"]}, grid.reshape(2, -1, WIDTH))
    x = vit.MAPHead(MLP, HEADS).apply({"params": p["map_head"]}, x)
    logits = nn.Dense(CLASSES).apply({"params": p["head"]}, x)
    return logits[jnp.arange(2), classes].sum()

  grads = jax.grad(score)(acts)
  expected = jax.nn.relu(jnp.einsum("bhwc,bc->bhw", acts, grads.mean(axis=(1, 2))))
  assert maps.shape == (2, files.GRID, files.GRID)
  np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6)
  assert float(maps.max()) > 0


def test_atlas_on_the_patch_grid(tower, photos, tmp_path, linear_umap):
  """collect (attributions to the image head) → layout → grid → icons → viewer
  on the MLP hidden layer, positions on the 4×4 patch grid."""
  from atlasjax.atlas import layout, pipeline, render_atlas  # pylint: disable=g-import-not-at-top
  model, params = tower
  config = pipeline.PipelineConfig(
      collect=collect.CollectConfig(layers=(HIDDEN,), crops_per_image=2,
                                    image_size=48, batch_size=16, shard_images=10),
      layout=layout.LayoutConfig(layer=HIDDEN, n_neighbors=4),
      atlas=render_atlas.AtlasConfig(layer=HIDDEN, grid_sizes=(2,), min_density=(1,),
                                     icon_size=files.SIZE, steps=4, attempts=1,
                                     chunk_size=4),
      viewer=True)
  work = tmp_path / "work"
  path = pipeline.run(config, model, params, pathlib.Path(photos[0]).parent, work)
  (grid,) = json.loads(path.read_text())["grids"]
  assert len(grid["cells"]) >= 2 and (work / "index.html").is_file()
  loaded = collect.Collection.open(work).load([f"attributions/{HIDDEN}",
                                               f"positions/{HIDDEN}"])
  assert loaded[f"attributions/{HIDDEN}"].shape == (20, CLASSES)
  assert loaded[f"positions/{HIDDEN}"].max() <= files.GRID - 2


def test_dictionary_on_the_mlp_hidden_layer(tower, photos, tmp_path):
  model, params = tower
  config = features_pipeline.DictionaryConfig(
      HIDDEN, heldout_every=5, shard_photos=8,
      train=features_train.TrainConfig(features=16, k=4, epochs=2, batch_size=32,
                                       checkpoint_every=0))
  metrics = features_pipeline.run(config, model, params,
                                  pathlib.Path(photos[0]).parent, tmp_path)
  assert metrics["train_vectors"] == 8 * files.GRID * files.GRID
  assert 0 < metrics["mean_l0"] <= 4 and np.isfinite(metrics["r2"])


def test_microscope_opens_slash_named_layers(tower, photos, tmp_path):
  """The site of a ``/``-named layer; in the browser, its unit page opens by
  search and the layer's grid lists every unit."""
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  model, params = tower
  config = microscope.MicroscopeConfig(layers=(HIDDEN,), size=files.SIZE, steps=3,
                                       chunk_size=MLP, examples=2, links=2,
                                       tile=files.SIZE, batch_size=4, transforms="none")
  summary = microscope.build(model, params, config, tmp_path, photos[:4],
                             log=lambda _: None)
  assert HIDDEN in summary["site_layers"]
  assert sorted(microscope.load_renders(tmp_path, HIDDEN)) == list(range(MLP))
  if not pathlib.Path(CHROMIUM).is_file():
    pytest.fail(f"The microscope test needs {CHROMIUM}: apt-get install -y chromium",
                pytrace=False)
  index = (tmp_path / "index.html").resolve().as_uri()
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(index)
    page.wait_for_function("document.getElementById('microscope').dataset.ready === '1'")
    page.fill("#ms-search", f"{HIDDEN}:3")
    page.press("#ms-search", "Enter")
    page.wait_for_function(
        f"document.getElementById('microscope').dataset.unit === '{HIDDEN}:3'",
        timeout=5000)
    assert page.locator("h2").inner_text() == f"{HIDDEN}:3"
    page.reload()                     # the unit's address opens the same page
    page.wait_for_function(
        f"document.getElementById('microscope').dataset.unit === '{HIDDEN}:3'",
        timeout=5000)
    browser.close()
  assert not errors, errors
