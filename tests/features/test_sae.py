"""The TopK SAE: the interchange formula against NumPy, the file format,
Hungarian matching against brute force, AuxK, and training (loss falls,
decoder rows stay unit, seeded, a resumed run equals an uninterrupted one)
on positions collected from a from_flax model."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

import flax_cnn
from atlasjax.features import pipeline
from atlasjax.features import positions
from atlasjax.features import sae
from atlasjax.features import train


def _random_dictionary(seed=0, c=6, f=10, k=3):
  rng = np.random.default_rng(seed)
  dec = rng.normal(size=(f, c)).astype(np.float32)
  dec /= np.linalg.norm(dec, axis=1, keepdims=True)
  return sae.Dictionary(jnp.asarray(rng.normal(size=(c, f)), jnp.float32),
                        jnp.asarray(rng.normal(size=f), jnp.float32),
                        jnp.asarray(dec), jnp.asarray(rng.normal(size=c), jnp.float32),
                        k, 2.5)


def _numpy_codes(d, x):
  pre = (x / d.input_scale - np.asarray(d.decoder_bias)) @ np.asarray(d.encoder)
  pre = np.maximum(pre + np.asarray(d.encoder_bias), 0)
  z = np.zeros_like(pre)
  for i, row in enumerate(pre):
    keep = np.argsort(-row, kind="stable")[:d.k]
    z[i, keep] = row[keep]
  return z


def test_encode_and_decode_follow_the_interchange_formula():
  d = _random_dictionary()
  x = np.random.default_rng(1).normal(size=(20, 6)).astype(np.float32) * 3
  z = _numpy_codes(d, x)
  np.testing.assert_allclose(np.asarray(sae.encode(d, x)), z, rtol=1e-5, atol=1e-5)
  x_hat = (z @ np.asarray(d.decoder) + np.asarray(d.decoder_bias)) * d.input_scale
  np.testing.assert_allclose(np.asarray(sae.reconstruct(d, x)), x_hat,
                             rtol=1e-5, atol=1e-5)
  assert ((np.asarray(sae.encode(d, x)) > 0).sum(1) <= d.k).all()


def test_batch_topk_keeps_the_k_n_largest_of_the_batch():
  v = np.random.default_rng(2).uniform(size=(5, 8)).astype(np.float32)
  got = np.asarray(sae.batch_topk(jnp.asarray(v), 2))
  threshold = np.sort(v.ravel())[-10]
  np.testing.assert_array_equal(got, np.where(v >= threshold, v, 0))


def test_file_round_trip_and_a_file_missing_a_key(tmp_path):
  d = _random_dictionary()
  path = sae.save(d, tmp_path / "dictionary.npz")
  with np.load(path) as f:
    assert set(f.files) == set(sae.ARRAYS + sae.SCALARS)
    assert f["encoder"].shape == (6, 10) and f["decoder"].shape == (10, 6)
    assert int(f["k"]) == 3 and float(f["input_scale"]) == 2.5
  back = sae.load(path)
  x = np.ones((2, 6), np.float32)
  np.testing.assert_array_equal(sae.encode(back, x), sae.encode(d, x))
  np.savez(tmp_path / "bad.npz", encoder=np.zeros((2, 2)))
  with pytest.raises(ValueError, match="lacks encoder_bias"):
    sae.load(tmp_path / "bad.npz")


def test_hungarian_matching_equals_brute_force():
  a, b = _random_dictionary(3, f=5), _random_dictionary(4, f=5)
  cos = sae.decoder_cosines(a, b)
  best = max(itertools.permutations(range(5)),
             key=lambda p: sum(cos[i, p[i]] for i in range(5)))
  got = sae.match(a, b)
  assert got["pairs"] == list(best)
  perm = np.array([2, 0, 4, 1, 3])
  shuffled = a._replace(decoder=a.decoder[perm])
  same = sae.match(a, shuffled)
  assert same["pairs"] == list(np.argsort(perm))
  assert same["mean_cosine"] == pytest.approx(1.0, abs=1e-6)


def test_auxk_gives_gradient_to_dead_features_only_when_some_are_dead():
  config = train.TrainConfig(features=10, k=2, dead_after=5)
  d = _random_dictionary(f=10, k=2)
  params = {n: getattr(d, n) for n in sae.ARRAYS}
  x = jnp.asarray(np.random.default_rng(5).normal(size=(16, 6)), jnp.float32)
  alive = jnp.zeros(10, jnp.int32)
  _, (_, aux, _, _) = train._losses(params, x, alive, config)
  assert float(aux) == 0.0
  dead = alive.at[:5].set(100)
  grad = jax.grad(lambda p: train._losses(p, x, dead, config)[1][1])(params)
  assert float(jnp.abs(grad["encoder"][:, :5]).sum()) > 0
  assert float(jnp.abs(grad["encoder"][:, 5:]).sum()) == 0


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
  """All positions of a from_flax CNN's stage1 on 10 random photos."""
  folder = tmp_path_factory.mktemp("photos")
  rng = np.random.default_rng(0)
  for i in range(10):
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), np.uint8)).save(
        folder / f"p{i:02d}.png")
  model, params = flax_cnn.tiny_cnn()
  config = pipeline.DictionaryConfig("stage1", shard_photos=3, heldout_every=5)
  work = tmp_path_factory.mktemp("collect")
  train_set, heldout = pipeline.collect(config, model, params, folder, work)
  return model, params, folder, work, train_set, heldout


def test_collection_has_every_position_and_resumes(collected):
  model, params, folder, work, train_set, heldout = collected
  # 8 training photos × 16 × 16 positions (stage1 halves the 32 px input).
  assert train_set.rows == 8 * 16 * 16 and heldout.rows == 2 * 16 * 16
  assert train_set.depth == 8 and len(train_set.shards) == 3
  before = {n: (work / "positions/train" / n).stat().st_mtime_ns
            for n in train_set.shards}
  config = pipeline.DictionaryConfig("stage1", shard_photos=3, heldout_every=5)
  again, _ = pipeline.collect(config, model, params, folder, work)
  assert {n: (work / "positions/train" / n).stat().st_mtime_ns
          for n in again.shards} == before
  other = pipeline.DictionaryConfig("stage2", shard_photos=3, heldout_every=5)
  with pytest.raises(positions.PositionsError, match="layer = 'stage1' there"):
    pipeline.collect(other, model, params, folder, work)


def test_batches_are_seeded_and_skip_resumes_mid_epoch(collected):
  train_set = collected[4]
  a = list(train_set.batches(100, seed=1, epoch=0))
  b = list(train_set.batches(100, seed=1, epoch=0))
  assert len(a) == train_set.rows // 100
  np.testing.assert_array_equal(np.stack(a), np.stack(b))
  np.testing.assert_array_equal(np.stack(a[7:]),
                                np.stack(list(train_set.batches(100, 1, 0, skip=7))))
  c = list(train_set.batches(100, seed=1, epoch=1))
  assert not np.array_equal(a[0], c[0])


CONFIG = train.TrainConfig(features=32, k=4, epochs=2, batch_size=128, lr=3e-3,
                           dead_after=512, checkpoint_every=4)


def test_training_learns_keeps_unit_rows_and_resumes_exactly(collected, tmp_path):
  _, _, _, _, train_set, heldout = collected
  whole = train.train(CONFIG, train_set, tmp_path / "whole")
  first = train.train(CONFIG, train_set, tmp_path / "split", stop_after=5)
  assert not first["done"] and first["steps"] == 5
  second = train.train(CONFIG, train_set, tmp_path / "split")
  assert second["done"]
  assert second["steps"] == whole["steps"] == 2 * train_set.rows // 128
  for name in sae.ARRAYS:
    np.testing.assert_allclose(np.asarray(getattr(second["dictionary"], name)),
                               np.asarray(getattr(whole["dictionary"], name)),
                               rtol=1e-5, atol=1e-6)
  d = whole["dictionary"]
  np.testing.assert_allclose(np.linalg.norm(np.asarray(d.decoder), axis=1), 1,
                             rtol=1e-5)
  start = train.dictionary_of(train.init_state(
      CONFIG, train_set.all(train.INIT_SAMPLE), optax.adam(CONFIG.lr)), CONFIG)
  assert (train.evaluate(d, heldout)["r2"]
          > train.evaluate(start, heldout)["r2"] + 0.05)
  with pytest.raises(ValueError, match="k = 4 there, 5 now"):
    train.train(train.TrainConfig(**{**CONFIG.to_json(), "k": 5}), train_set,
                tmp_path / "whole")


def test_fit_writes_the_files_and_stability_matches_two_seeds(collected):
  _, _, _, work, train_set, heldout = collected
  config = pipeline.DictionaryConfig("stage1", train=train.TrainConfig(
      **{**CONFIG.to_json(), "checkpoint_every": 0, "epochs": 1}))
  metrics = pipeline.fit(config.train, train_set, heldout, work)
  for key in ("r2", "mean_l0", "dead_fraction", "training_vectors_per_s"):
    assert key in metrics
  assert 0 < metrics["mean_l0"] <= 4 and 0 <= metrics["dead_fraction"] <= 1
  d = sae.load(work / pipeline.DICTIONARY_FILE)
  x = heldout.all()
  assert metrics["r2"] == pytest.approx(
      sae.explained_variance(x, np.asarray(sae.reconstruct(d, x))), abs=1e-4)
  matched = pipeline.stability(config, work, seed=1)
  assert len(matched["pairs"]) == 32 and sorted(matched["pairs"]) == list(range(32))
  assert -1 <= matched["mean_cosine"] <= 1
  assert (work / pipeline.STABILITY_FILE).is_file()
