"""Every stage on a SigLIP-shaped image tower (issue 30, item 3): a tiny
two-tower checkpoint in big_vision's layout (scanned MAP tower with an image
head, ``two_towers``' ``out_dim``) loaded through ``models.load("big_vision")``:
a render of the MAP head's pooled vector, collection with attributions
through the MAP head on the patch grid, Grad-CAM on the token grid (a MAP
head reads the last block's patch tokens, unlike a CLS head), the Microscope
on a ``/``-named MLP hidden layer (every unit rendered; in the browser) and a
dictionary. The stages themselves — the atlas pipeline and its icons
included — are tested on the toy ViT in test_flax_vit_stages.py; these check
that a SigLIP tower reaches them, at the smallest sizes."""

from __future__ import annotations

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

WIDTH, MLP, HEADS, CLASSES = 8, 16, 2, 6
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
  for i in range(4):
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), np.uint8)).save(folder / f"p{i}.jpg")
  return images_lib.list_images(folder)


def test_render_of_the_map_heads_pooled_vector_rises(tower):
  model, params = tower
  config = render.RenderConfig(size=files.SIZE, steps=4, transforms="none", lr=0.05)
  result = render.render(model, params, lambda c: objectives.channel(POOLED, c),
                         args=jnp.arange(2), config=config, key=jax.random.PRNGKey(0))
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

  grads = jax.jit(jax.grad(score))(acts)
  expected = jax.nn.relu(jnp.einsum("bhwc,bc->bhw", acts, grads.mean(axis=(1, 2))))
  assert maps.shape == (2, files.GRID, files.GRID)
  np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6)
  assert float(maps.max()) > 0


def test_collect_with_attributions_through_the_map_head(tower, photos, tmp_path):
  """collect.run on the MLP hidden layer: vectors at inner positions of the
  4×4 patch grid, attributions to the image head's outputs."""
  model, params = tower
  config = collect.CollectConfig(layers=(HIDDEN,), crops_per_image=2, image_size=48,
                                 batch_size=8, shard_images=4)
  manifest = collect.run(config, model, params, pathlib.Path(photos[0]).parent,
                         tmp_path / "work")
  loaded = collect.Collection.open(tmp_path / "work").load(
      [f"vectors/{HIDDEN}", f"attributions/{HIDDEN}", f"positions/{HIDDEN}"])
  assert manifest["samples"] == 8 and loaded[f"vectors/{HIDDEN}"].shape == (8, MLP)
  assert loaded[f"attributions/{HIDDEN}"].shape == (8, CLASSES)
  assert np.abs(np.asarray(loaded[f"attributions/{HIDDEN}"], np.float32)).max() > 1e-4
  positions = loaded[f"positions/{HIDDEN}"]
  assert positions.min() >= 1 and positions.max() <= files.GRID - 2


def test_dictionary_on_the_mlp_hidden_layer(tower, photos, tmp_path):
  model, params = tower
  config = features_pipeline.DictionaryConfig(
      HIDDEN, heldout_every=4, shard_photos=4,
      train=features_train.TrainConfig(features=16, k=4, epochs=1, batch_size=16,
                                       checkpoint_every=0))
  metrics = features_pipeline.run(config, model, params,
                                  pathlib.Path(photos[0]).parent, tmp_path)
  assert metrics["train_vectors"] == 3 * files.GRID * files.GRID
  assert 0 < metrics["mean_l0"] <= 4 and np.isfinite(metrics["r2"])


def test_microscope_opens_slash_named_layers(tower, tmp_path):
  """The site of a ``/``-named MLP hidden layer (its pages only: rendering
  every unit is the Microscope's own test); in the browser, a unit found by
  search opens, and its address opens the same page again."""
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  model, _ = tower
  config = microscope.MicroscopeConfig(layers=(HIDDEN,), size=files.SIZE, tile=files.SIZE)
  layers = microscope.site_layers(model, (HIDDEN,))
  assert HIDDEN in layers
  microscope.write_site(model, config, tmp_path, layers, {}, [])
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
