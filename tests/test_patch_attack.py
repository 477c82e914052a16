"""Patch attack harness: geometry, controls, metrics, and a real-weights check."""

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from atlasjax import evaluation
from atlasjax import images as images_lib
from atlasjax import labels as labels_lib
from atlasjax import patch_attack as pa

GOLDFISH_PHOTO = "n01443537_goldfish.jpg"
GOLDFISH_BOX = (0.07, 0.15, 0.80, 0.85)   # the fish, as fractions of the photo


@pytest.mark.parametrize("corner,expected", [
    ("top_left", (0, 0)), ("top_right", (0, 20)),
    ("bottom_left", (26, 0)), ("bottom_right", (26, 20))])
def test_paste_geometry_at_each_corner(corner, expected):
  images = jnp.zeros((2, 32, 40, 3))
  patch = jnp.ones((6, 20, 4))
  top, left = pa.corner_offset(corner, (6, 20), (32, 40))
  assert (top, left) == expected
  out = np.asarray(pa.paste(images, patch, top, left))
  rows, cols = np.nonzero(out[1, ..., 0])
  assert (rows.min(), cols.min()) == expected
  assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (6, 20)
  assert out.sum() == 2 * 6 * 20 * 3


def test_margin_and_alpha_compositing():
  images = jnp.full((1, 10, 10, 3), 0.2)
  patch = jnp.concatenate([jnp.ones((4, 4, 3)), jnp.full((4, 4, 1), 0.25)], -1)
  top, left = pa.corner_offset("bottom_right", (4, 4), (10, 10), margin=1)
  assert (top, left) == (5, 5)
  out = np.asarray(pa.paste(images, patch, top, left))
  np.testing.assert_allclose(out[0, 5:9, 5:9], 0.25 + 0.75 * 0.2, rtol=1e-6)
  np.testing.assert_allclose(out[0, 9], 0.2)
  with pytest.raises(ValueError):
    pa.corner_offset("middle", (4, 4), (10, 10))


def test_patch_shape_keeps_aspect_and_fits():
  assert pa.patch_shape((50, 100), 0.4, (224, 224)) == (45, 90)
  assert pa.patch_shape((300, 100), 0.7, (224, 224)) == (224, 157)


def test_load_patch_crops_and_keeps_alpha(tmp_path):
  rgba = np.zeros((20, 40, 4), np.uint8)
  rgba[..., 0] = 255
  rgba[:, 20:, 3] = 255
  Image.fromarray(rgba, "RGBA").save(tmp_path / "icon.png")
  patch = pa.load_patch(tmp_path / "icon.png")
  assert patch.shape == (20, 40, 4) and patch[0, 0, 3] == 0 and patch[0, 30, 3] == 1
  crop = pa.load_patch(tmp_path / "icon.png", box=(0.5, 0.0, 1.0, 0.5))
  assert crop.shape == (10, 20, 4) and (crop[..., 3] == 1).all()
  Image.fromarray(rgba[..., :3]).save(tmp_path / "photo.jpg")
  assert (pa.load_patch(tmp_path / "photo.jpg", box=(0, 0, 10, 5))[..., 3]
          == 1).all()
  with pytest.raises(ValueError):
    pa.load_patch(tmp_path / "icon.png", box=(30, 0, 10, 5))


def test_control_patch_is_seeded_noise_with_same_alpha():
  like = np.concatenate([np.ones((5, 6, 3)), np.full((5, 6, 1), 0.5)], -1)
  a = pa.noise_patch(jax.random.PRNGKey(0), like)
  b = pa.noise_patch(jax.random.PRNGKey(0), like)
  c = pa.noise_patch(jax.random.PRNGKey(1), like)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  np.testing.assert_array_equal(a[..., 3], 0.5)
  assert 0.2 < float(a[..., :3].mean()) < 0.8


def test_sweep_widths():
  assert pa.sweep_widths((0.2, 0.4, 0.7), steps=0) == (0.2, 0.4, 0.7)
  widths = pa.sweep_widths(steps=8)
  assert widths[0] == 0.1 and widths[-1] == 0.8 and 0.7 in widths
  assert len(widths) == 8  # the defaults are on the sweep's grid


def test_run_and_summarize_on_toy_model(toy):
  model, params = toy
  rng = np.random.default_rng(0)
  images = rng.random((5, 32, 32, 3)).astype(np.float32)
  paths = [f"img{i}" for i in range(5)]
  patch = np.concatenate([np.ones((8, 8, 3)) * [1, 0, 0], np.ones((8, 8, 1))],
                         -1).astype(np.float32)
  config = pa.PatchAttackConfig(target=2, widths=(0.25, 0.5),
                                corners=("top_left", "bottom_right"),
                                batch_size=3)
  result = pa.run(model, params, paths, patch, config,
                  load=lambda p: images[int(p[3:])], warn=False)
  assert result.top1.shape == (2, 2, 2, 5)
  assert result.patch_shapes == ((8, 8), (16, 16))
  # Recompute one cell by hand.
  top, left = pa.corner_offset("bottom_right", (16, 16), (32, 32))
  pasted = pa.paste(jnp.asarray(images), jnp.asarray(pa.resize_patch(
      patch, (16, 16))), top, left)
  expected = np.argmax(model.apply(params, pasted)["logits"], axis=-1)
  np.testing.assert_array_equal(result.top1[0, 1, 1], expected)
  summary = pa.summarize(result)
  eligible = (result.references != 2) & (result.clean_top1 != 2)
  row = summary["patch"][1]
  assert row["n_eligible"] == 2 * eligible.sum()
  assert row["success_rate"] == pytest.approx(
      (result.top1[0, 1][:, eligible] == 2).mean())
  corner = row["by_corner"]["bottom_right"]
  assert corner["success_rate"] == pytest.approx((expected[eligible] == 2).mean())
  assert summary["control"][0]["width"] == 0.25


def test_goldfish_patch_beats_noise_control(googlenet, sample_dir, tmp_path):
  model, params = googlenet
  labels = labels_lib.load()
  paths = [p for p in images_lib.list_images(sample_dir)
           if GOLDFISH_PHOTO not in p][::97][:8]
  patch = pa.load_patch(sample_dir / GOLDFISH_PHOTO, box=GOLDFISH_BOX)
  config = pa.PatchAttackConfig(target=labels.lookup("goldfish"), widths=(0.7,),
                                corners=("top_left",), batch_size=8)
  result = pa.run(model, params, paths, patch, config,
                  [evaluation.label_of(p, labels) for p in paths])
  summary = pa.summarize(result)
  real, control = summary["patch"][0], summary["control"][0]
  assert real["n_eligible"] == 8
  assert real["success_rate"] >= 0.5
  assert real["success_rate"] > control["success_rate"]
  assert real["mean_target_prob"] > 10 * control["mean_target_prob"]
  path = pa.save_plot(summary, tmp_path / "plot.png")
  assert Image.open(path).size[0] > 0
