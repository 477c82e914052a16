"""bench/distill_vit.py's pieces: the folded head, mixed crops, pooling, flags."""

import importlib.util
import pathlib

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax.models import vit

_SCRIPT = pathlib.Path(__file__).parents[2] / "bench" / "distill_vit.py"
_spec = importlib.util.spec_from_file_location("distill_vit", _SCRIPT)
distill = importlib.util.module_from_spec(_spec)
_before = set(flags.FLAGS)
_spec.loader.exec_module(distill)
# The script's flags (--data, --seed, ...) leave the global registry at once:
# scripts run in-process later in this worker define flags of the same names.
for _name in set(flags.FLAGS) - _before:
  delattr(flags.FLAGS, _name)



def test_folded_head_is_exactly_the_training_logits():
  """The exported GAP head reproduces the logits the loss trained on: the
  classifier of the spatial mean of the unstandardised projected tokens (the
  ViT's GAP head reads the mean of its normed tokens; bench/distill_vit.py
  also records this difference on the real model as fold_max_abs_diff)."""
  rng = np.random.default_rng(0)
  width, channels, classes = 16, 6, 10
  tokens = rng.normal(size=(3, 49, width)).astype(np.float32)
  proj = {"kernel": rng.normal(size=(width, channels)).astype(np.float32),
          "bias": rng.normal(size=channels).astype(np.float32)}
  stats = (rng.normal(size=channels).astype(np.float32),
           np.exp(rng.normal(size=channels)).astype(np.float32))
  classifier = {"kernel": rng.normal(size=(channels, classes)).astype(np.float32),
                "bias": rng.normal(size=classes).astype(np.float32)}
  # The training path, token by token: project, unstandardise, mean, classify.
  z = (tokens @ proj["kernel"] + proj["bias"]) * stats[1] + stats[0]
  expected = z.mean(1) @ classifier["kernel"] + classifier["bias"]
  variables = {"params": {vit.HEAD: {"kernel": np.zeros((width, 1000)),
                                     "bias": np.zeros(1000)}, "other": 1}}
  exported = distill.export_variables({"vit": variables, "proj": {vit.NORM: proj}},
                                      True, {distill.HEAD_LAYER: stats}, classifier)
  head = exported["params"][vit.HEAD]
  got = tokens.mean(1) @ head["kernel"] + head["bias"]
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  assert head["kernel"].shape == (width, classes) and exported["params"]["other"] == 1
  np.testing.assert_allclose(
      distill.folded_logits(proj, tokens.mean(1), stats, classifier), expected,
      rtol=1e-4, atol=1e-4)
  # Without --fold_head the student's own head is exported unchanged.
  plain = distill.export_variables({"vit": variables, "proj": {}}, False, {}, classifier)
  assert plain["params"][vit.HEAD]["kernel"].shape == (width, 1000)


def test_mix_crops_pairs_different_photos_and_is_seeded():
  photo = np.repeat(np.arange(4), 5)
  crops = np.repeat(photo[:, None, None, None] * 60, 16, 1).repeat(16, 2).repeat(3, 3)
  crops = crops.astype(np.uint8)
  mixed = distill.mix_crops(crops, photo, 1.0, np.random.default_rng(0))
  again = distill.mix_crops(crops, photo, 1.0, np.random.default_rng(0))
  np.testing.assert_array_equal(mixed, again)
  changed = [i for i in range(len(crops)) if not np.array_equal(mixed[i], crops[i])]
  assert len(changed) >= 15  # fraction 1: all but degenerate (lam≈1) draws
  # Every pixel is a blend of its own photo's value and another photo's.
  for i in changed:
    assert set(np.unique(mixed[i])) != {photo[i] * 60}
  untouched = distill.mix_crops(crops, photo, 0.0, np.random.default_rng(0))
  np.testing.assert_array_equal(untouched, crops)


def test_pool_to_grid_is_a_block_mean():
  x = np.random.default_rng(0).normal(size=(2, 28, 28, 5)).astype(np.float32)
  got = np.asarray(distill.pool_to_grid(jnp.asarray(x), 7))
  expected = np.array([[x[b, 4 * i:4 * i + 4, 4 * j:4 * j + 4].mean((0, 1))
                        for i in range(7) for j in range(7)] for b in range(2)])
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_bad_dense_pair_names_the_fix():
  assert distill.parse_dense(["block1:mixed3b"], vit.DISTILLED) == {"block1": "mixed3b"}
  with pytest.raises(app.UsageError, match="use blockI:layer.*block0..block5"):
    distill.parse_dense(["block9:mixed3b"], vit.DISTILLED)
  with pytest.raises(app.UsageError, match="mixed4c"):
    distill.parse_dense(["block1:conv2d0"], vit.DISTILLED)
