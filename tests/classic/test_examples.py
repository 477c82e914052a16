"""Dataset examples: streaming top-k against brute force, crops, spectrum."""

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from atlasjax import images as images_lib
from atlasjax import plotting
from atlasjax.classic import examples

SIZE = 32


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp("examples")
  rng = np.random.default_rng(0)
  for i in range(11):
    pixels = (rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
  (folder / "img99_broken.png").write_bytes(b"not a png")
  return folder


def _load(path):
  return images_lib.read_image(path)


def test_streaming_topk_equals_brute_force(toy, image_dir):
  model, params = toy
  paths = images_lib.list_images(image_dir)
  directions = np.concatenate([
      examples.channel_directions([0, 5], 16),
      np.random.default_rng(1).standard_normal((1, 16)).astype(np.float32)])
  config = examples.ExamplesConfig(layer="conv2", k=4, batch_size=3)
  found = examples.collect(model, params, paths, config, directions,
                           load=_load, warn=False)
  assert found.report.skipped == 1 and found.grid == (8, 8)
  good = [i for i, p in enumerate(paths) if "broken" not in p]
  stack = jnp.asarray(np.stack([_load(paths[i]) for i in good]))
  acts = np.asarray(model.apply(params, stack, layers=("conv2",))["conv2"])
  proj = np.einsum("bhwc,dc->bdhw", acts, directions)
  for d in range(3):
    flat = proj[:, d].reshape(len(good), -1)
    scores = flat.max(axis=1)
    order = np.argsort(-scores, kind="stable")[:4]
    np.testing.assert_array_equal(found.top.images[d], np.array(good)[order])
    np.testing.assert_allclose(found.top.scores[d], scores[order], rtol=1e-5)
    pos = np.stack(np.unravel_index(flat.argmax(axis=1), (8, 8)), axis=-1)
    np.testing.assert_array_equal(found.top.positions[d], pos[order])
  assert np.isnan(found.scores[paths.index(str(image_dir / "img99_broken.png"))]).all()


def test_merge_topk_keeps_best_with_deterministic_ties():
  state = examples.empty_topk(1, 3)
  state = examples.merge_topk(state, [[1.0], [0.0], [2.0]], [0, 1, 2],
                              np.zeros((3, 1, 2)))
  state = examples.merge_topk(state, [[2.0], [5.0]], [3, 4], np.ones((2, 1, 2)))
  np.testing.assert_array_equal(state.images[0], [4, 2, 3])
  np.testing.assert_array_equal(state.scores[0], [5.0, 2.0, 2.0])
  small = examples.merge_topk(examples.empty_topk(1, 3), [[1.0]], [7],
                              np.zeros((1, 1, 2)))
  np.testing.assert_array_equal(small.images[0], [7, -1, -1])


def test_crop_box_maps_layer_position_to_pixels():
  assert examples.crop_box((3, 5), 16, 48, (224, 224)) == (32, 64, 48)
  assert examples.crop_box((0, 13), 16, 48, (224, 224)) == (0, 176, 48)
  assert examples.crop_box((6, 6), 32, 500, (224, 200)) == (24, 0, 200)


def test_receptive_field_of_toy_layers(toy):
  model, params = toy
  key = jax.random.PRNGKey(0)
  # 3×3 stride-2 convs: 3 pixels, then 3 + 2 * 2 = 7.
  assert examples.receptive_field_size(model, params, "conv1", key, 32,
                                       mass=1.0) == 3
  assert examples.receptive_field_size(model, params, "conv2", key, 32,
                                       mass=1.0) == 7
  assert examples.receptive_field_size(model, params, "conv2", key, 32,
                                       mass=0.5) <= 7


def test_spectrum_indices_and_tiles(toy, image_dir):
  scores = np.array([3.0, np.nan, 1.0, 2.0, 0.0])
  np.testing.assert_array_equal(
      examples.spectrum_indices(scores, (0.0, 0.5, 1.0)), [4, 3, 0])
  model, params = toy
  paths = images_lib.list_images(image_dir)[:4]
  found = examples.collect(model, params, paths,
                           examples.ExamplesConfig("conv2", k=2, batch_size=4),
                           examples.channel_directions([1], 16), load=_load)
  tiles = examples.example_tiles(found, 0, found.top.images[0], crop_size=8,
                                 tile_size=16, load=_load)
  assert len(tiles) == 2 and tiles[0].shape == (16, 16, 3)
  top, left, side = examples.crop_box(found.top.positions[0, 0], 4, 8,
                                      (SIZE, SIZE))
  expected = _load(paths[found.top.images[0, 0]])[top:top + side,
                                                   left:left + side]
  np.testing.assert_allclose(tiles[0], plotting.resize(expected, (16, 16)),
                             atol=1e-6)
