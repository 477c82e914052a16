"""Collection: sampling, attribution, shards, resume after kill -9, mismatches."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import toy_model
from atlasjax.atlas import collect

REPO = pathlib.Path(__file__).resolve().parents[2]


def make_images(folder: pathlib.Path, n: int, seed: int = 0, size=(40, 32)):
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(n):
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f"img_{i:03d}.png")
  return folder


TOY_CONFIG = collect.CollectConfig(
    layers=("conv1", "conv2"), crops_per_image=2, image_size=32, batch_size=8,
    shard_images=4)


def test_positions_never_on_border_and_uniform():
  h, w = 7, 9
  draws = np.array([collect.sample_positions(3, i, c, 0, h, w)
                    for i in range(1500) for c in range(2)])
  assert draws[:, 0].min() == 1 and draws[:, 0].max() == h - 2
  assert draws[:, 1].min() == 1 and draws[:, 1].max() == w - 2
  counts = np.zeros((h, w))
  np.add.at(counts, (draws[:, 0], draws[:, 1]), 1)
  inner = counts[1:-1, 1:-1]
  expected = len(draws) / inner.size
  chi2 = ((inner - expected) ** 2 / expected).sum()
  # 35 cells → 34 dof; 99.9th percentile of chi2(34) is ~65.
  assert chi2 < 65, chi2
  assert counts.sum() == inner.sum()  # nothing on the border


def test_sampling_is_deterministic_and_seeded():
  a = collect.sample_positions(0, 5, 1, 0, 14, 14)
  assert np.array_equal(a, collect.sample_positions(0, 5, 1, 0, 14, 14))
  boxes = {collect.crop_box(s, 5, 1, 4, 300, 200) for s in range(10)}
  assert len(boxes) == 10


def test_crop_boxes_inside_image():
  for i in range(200):
    x0, y0, x1, y1 = collect.crop_box(1, i, i % 3, 3, 320, 240)
    assert 0 <= x0 < x1 <= 320 + 1e-6 and 0 <= y0 < y1 <= 240 + 1e-6
  # One crop per image is the standard centre crop (224/256 of the short side).
  x0, y0, x1, y1 = collect.crop_box(0, 0, 0, 1, 512, 256)
  assert (x1 - x0, y1 - y0) == (224, 224) and x0 == 144 and y0 == 16


def test_tiny_feature_map_is_refused():
  with pytest.raises(collect.CollectError, match="border"):
    collect.sample_positions(0, 0, 0, 0, 2, 5)


def test_attribution_is_the_linearised_effect(toy, tmp_path):
  model, params = toy
  images = jax.random.uniform(jax.random.PRNGKey(1), (3, 32, 32, 3))
  positions = np.array([[[2, 3], [1, 1], [6, 4]]], np.int32)
  out = collect.make_sample_fn(model, ("conv2",), True)(params, images, positions)
  acts = model.apply(params, images)
  for b, (r, c) in enumerate(positions[0]):
    v = acts["conv2"][b, r, c]
    np.testing.assert_allclose(out["vectors/conv2"][b], v, rtol=1e-6)
    # conv2 → logits is linear (mean-pool then matmul) in this toy model, so
    # the JVP is exactly the logits' change from that vector alone.
    expected = v @ params["head"] / (acts["conv2"].shape[1] * acts["conv2"].shape[2])
    np.testing.assert_allclose(np.asarray(out["attributions/conv2"][b], np.float32),
                               expected, rtol=2e-3, atol=1e-4)
  top = np.argsort(-np.asarray(acts["logits"]), axis=1)[:, :5]
  assert np.array_equal(np.asarray(out["top_classes"]), top)


def test_attribution_matches_finite_difference_on_googlenet(googlenet):
  model, params = googlenet
  images = jax.random.uniform(jax.random.PRNGKey(0), (1, 96, 96, 3))
  positions = np.array([[[2, 3]]], np.int32)
  out = collect.make_sample_fn(model, ("mixed4c",), True)(params, images, positions)
  a = jax.jit(lambda p, x: model.apply(p, x, layers=("mixed4c",)))(params, images)["mixed4c"]
  tangent = jnp.zeros_like(a).at[0, 2, 3].set(a[0, 2, 3])
  # ReLUs downstream make the logits piecewise linear in the perturbation, so
  # the central difference needs a small step; float32 noise then bounds the
  # agreement at about 1e-3.
  eps = 1e-3
  logits = jax.jit(lambda p, e: model.apply(p, images, perturb={"mixed4c": e})["logits"])
  fd = np.asarray((logits(params, eps * tangent) - logits(params, -eps * tangent))
                  / (2 * eps))[0]
  jvp = np.asarray(out["attributions/mixed4c"], np.float32)[0]
  assert np.corrcoef(jvp, fd)[0, 1] > 0.995
  np.testing.assert_allclose(jvp, fd, atol=0.1 * np.abs(fd).max())


def test_collect_and_export(toy, tmp_path):
  model, params = toy
  images = make_images(tmp_path / "imgs", 10)
  manifest = collect.run(TOY_CONFIG, model, params, images, tmp_path / "wd")
  assert manifest["complete"] and manifest["samples"] == 20
  assert len(manifest["shards"]) == 3
  c = collect.Collection.open(tmp_path / "wd")
  data = c.load(["image_index", "crop_index", "vectors/conv1", "positions/conv2",
                 "attributions/conv2"])
  assert data["vectors/conv1"].shape == (20, 8)
  assert data["attributions/conv2"].dtype == np.float16
  order = list(zip(data["image_index"], data["crop_index"]))
  assert order == sorted(order) and len(set(order)) == 20   # canonical order
  assert data["positions/conv2"].min() >= 1 and data["positions/conv2"].max() <= 6
  c.export(tmp_path / "all.npz")
  exported = np.load(tmp_path / "all.npz")
  np.testing.assert_array_equal(exported["vectors_conv1"], data["vectors/conv1"])
  assert list(exported["image_ids"]) == c.ids
  mm = c.vectors_memmap("conv1")
  np.testing.assert_array_equal(np.asarray(mm), data["vectors/conv1"])


def test_bad_images_are_skipped_and_reported(toy, tmp_path):
  model, params = toy
  images = make_images(tmp_path / "imgs", 5)
  (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  manifest = collect.run(TOY_CONFIG, model, params, images, tmp_path / "wd")
  assert manifest["skipped"] == 1 and manifest["samples"] == 10
  reasons = [r for s in manifest["shards"] for r in s.get("skipped_reasons", [])]
  assert len(reasons) == 1


def test_empty_and_corrupt_folders_fail_clearly(toy, tmp_path):
  model, params = toy
  (tmp_path / "empty").mkdir()
  with pytest.raises(collect.CollectError, match="No image files"):
    collect.run(TOY_CONFIG, model, params, tmp_path / "empty", tmp_path / "wd1")
  bad = tmp_path / "bad"
  bad.mkdir()
  for i in range(3):
    (bad / f"x{i}.jpg").write_bytes(b"garbage")
  with pytest.raises(collect.CollectError, match="None of the 3 files"):
    collect.run(TOY_CONFIG, model, params, bad, tmp_path / "wd2")


def test_unknown_layer_is_refused(toy, tmp_path):
  model, params = toy
  images = make_images(tmp_path / "imgs", 2)
  config = collect.CollectConfig(layers=("mixed9z",), image_size=32)
  with pytest.raises(KeyError, match="Valid layers: conv1_pre_relu"):
    collect.run(config, model, params, images, tmp_path / "wd")


def test_mismatched_settings_are_refused_and_nothing_lost(toy, tmp_path):
  model, params = toy
  images = make_images(tmp_path / "imgs", 6)
  collect.run(TOY_CONFIG, model, params, images, tmp_path / "wd")
  before = sorted(os.listdir(tmp_path / "wd" / "collect"))
  other = TOY_CONFIG.__class__(**{**TOY_CONFIG.__dict__, "seed": 7})
  with pytest.raises(collect.CollectError, match="seed: existing 0 vs requested 7"):
    collect.run(other, model, params, images, tmp_path / "wd")
  # Shards from another model (different weights) are refused too.
  other_params = toy_model.toy_params(jax.random.PRNGKey(9))
  with pytest.raises(collect.CollectError, match="weights"):
    collect.run(TOY_CONFIG, model, other_params, images, tmp_path / "wd")
  assert sorted(os.listdir(tmp_path / "wd" / "collect")) == before
  assert collect.Collection.open(tmp_path / "wd").manifest["samples"] == 12


_WORKER = textwrap.dedent("""
    import sys, time
    import toy_model
    from atlasjax.atlas import collect
    from atlasjax import images as images_lib

    slow_load = images_lib.load_pil
    def load_pil(path):   # Slow decoding so that the kill lands mid-run.
      time.sleep(0.05)
      return slow_load(path)
    images_lib.load_pil = load_pil
    config = collect.CollectConfig(layers=("conv1", "conv2"), crops_per_image=2,
                                   image_size=32, batch_size=4, shard_images=3)
    collect.run(config, toy_model.TOY_MODEL, toy_model.toy_params(), sys.argv[1],
                sys.argv[2])
""")


def _shards_done(workdir: pathlib.Path) -> int:
  folder = workdir / "collect"
  if not folder.exists():
    return 0
  return sum(collect._is_finalized(p) for p in folder.iterdir()
             if p.name.startswith("shard_"))


@pytest.mark.parametrize("kill_after_shards", [1, 3])
def test_kill_dash_nine_then_resume_gives_identical_result(toy, tmp_path,
                                                          kill_after_shards):
  model, params = toy
  images = make_images(tmp_path / "imgs", 18, seed=2)
  config = collect.CollectConfig(layers=("conv1", "conv2"), crops_per_image=2,
                                 image_size=32, batch_size=4, shard_images=3)
  reference = collect.run(config, model, params, images, tmp_path / "ref")
  workdir = tmp_path / "killed"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(images), str(workdir)],
                          env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while _shards_done(workdir) < kill_after_shards and time.time() < deadline:
    if proc.poll() is not None:
      break
    time.sleep(0.01)
  assert proc.poll() is None, "the worker finished before it could be killed"
  time.sleep(0.07)  # Land somewhere inside the next shard.
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = _shards_done(workdir)
  assert 0 < done < 6, done
  resumed = collect.run(config, model, params, images, workdir)
  assert resumed["samples"] == reference["samples"] == 36
  keys = ["image_index", "crop_index", "crop_box", "vectors/conv1", "vectors/conv2",
          "positions/conv1", "positions/conv2", "attributions/conv2", "top_classes"]
  a = collect.Collection.open(tmp_path / "ref").load(keys)
  b = collect.Collection.open(workdir).load(keys)
  for k in keys:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  manifest = json.loads((workdir / "collect" / "manifest.json").read_text())
  assert [s["name"] for s in manifest["shards"]] == [
      f"shard_{i:05d}" for i in range(6)]
