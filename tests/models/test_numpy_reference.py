"""The Flax InceptionV1 against an independent plain-NumPy reference.

The reference (``numpy_reference.py``) is written from deploy.prototxt, reads
the raw weight files itself and computes in float64. Relative error is
``max|flax - numpy| / max|numpy|`` over the whole activation tensor.
"""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import numpy as np
import pytest
from PIL import Image

_spec = importlib.util.spec_from_file_location(
    "atlasjax_tests_numpy_reference",
    pathlib.Path(__file__).with_name("numpy_reference.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

TOLERANCE = 1e-4
# Non-square and chosen so that Caffe's ceil-mode pooling differs from floor
# mode at both stride-2 pools (56x60 -> 28x30, 28x30 -> 14x15).
HEIGHT, WIDTH = 112, 120
COMPARED = ("conv2d0_pre_relu", "conv2d0", "maxpool0", "localresponsenorm0",
            "conv2d1", "conv2d2", "localresponsenorm1", "maxpool1",
            "mixed3a_1x1", "mixed3a_3x3", "mixed3a_5x5", "mixed3a_pool_reduce",
            "mixed3a")


@pytest.fixture(scope="module")
def images(sample_dir):
  """Two real photos, resized to HEIGHT x WIDTH, RGB in [0, 1]."""
  out = []
  for name in ("n01443537_goldfish.jpg", "n01530575_brambling.jpg"):
    with Image.open(sample_dir / name) as im:
      im = im.convert("RGB").resize((WIDTH, HEIGHT), Image.BILINEAR)
      out.append(np.asarray(im, np.float32) / 255.0)
  return np.stack(out)


@pytest.fixture(scope="module")
def reference(data_root, images):
  return ref.forward(data_root / "bvlc_googlenet", images)


@pytest.fixture(scope="module")
def flax_acts(googlenet, images):
  model, params = googlenet
  fn = jax.jit(lambda p, x: model.apply(p, x, layers=COMPARED))
  return {k: np.asarray(v) for k, v in fn(params, images).items()}


def test_reference_pool_sizes_follow_caffe():
  # Sizes Caffe reports for the 224 px deploy net: 112 -> 56 -> 28 (ceil mode).
  assert ref.caffe_pool_size(112, 3, 2, 0) == 56
  assert ref.caffe_pool_size(56, 3, 2, 0) == 28
  assert ref.caffe_pool_size(28, 3, 1, 1) == 28
  # Ceil mode keeps the partial last window that floor mode would drop.
  assert ref.caffe_pool_size(56 + 4, 3, 2, 0) == 30
  assert ref.caffe_pool_size(27, 3, 2, 0) == 13


def test_conv2d0_matches_numpy(reference, flax_acts):
  for name in ("conv2d0_pre_relu", "conv2d0"):
    assert flax_acts[name].shape == reference[name].shape == (2, 56, 60, 64)
    err = ref.max_rel_error(flax_acts[name], reference[name])
    assert err <= TOLERANCE, f"{name}: max relative error {err:.3g}"


def test_mixed3a_path_matches_numpy(reference, flax_acts):
  assert reference["maxpool0"].shape == (2, 28, 30, 64)
  assert reference["maxpool1"].shape == (2, 14, 15, 192)
  assert reference["mixed3a"].shape == (2, 14, 15, 256)
  errors = {}
  for name in COMPARED:
    assert flax_acts[name].shape == reference[name].shape, name
    errors[name] = ref.max_rel_error(flax_acts[name], reference[name])
  print("max relative errors:", {k: f"{v:.2e}" for k, v in errors.items()})
  bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
  assert not bad, f"relative error above {TOLERANCE}: {bad}"
  # The check is not vacuous: activations are non-trivial.
  assert (reference["mixed3a"] > 0).mean() > 0.05
