"""BVLC GoogLeNet (InceptionV1) on the real weights: shapes, metadata, layer
selection, determinism and input sizes."""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from atlasjax import models
from atlasjax.models import UnknownLayerError, flax_adapter, inception_v1


def _photo(sample_dir, size, name="n01443537_goldfish.jpg"):
  with Image.open(sample_dir / name) as im:
    im = im.convert("RGB").resize((size, size) if isinstance(size, int)
                                  else size[::-1], Image.BILINEAR)
    return np.asarray(im, np.float32)[None] / 255.0


def _prototxt_depths(data_root) -> dict[str, int]:
  """Concat widths of every inception block, parsed from deploy.prototxt."""
  text = (data_root / "bvlc_googlenet" / "deploy.prototxt").read_text()
  outputs = {}
  for block in re.findall(r"layer \{(.*?)\n\}", text, re.S):
    name = re.search(r'name: "([^"]+)"', block).group(1)
    num = re.search(r"num_output: (\d+)", block)
    if num:
      outputs[name] = int(num.group(1))
  depths = {}
  for name in outputs:
    m = re.fullmatch(r"inception_(\d[ab-e])/1x1", name)
    if m:
      stem = f"inception_{m.group(1)}"
      depths["mixed" + m.group(1)] = sum(
          outputs[f"{stem}/{b}"] for b in ("1x1", "3x3", "5x5", "pool_proj"))
  depths["logits"] = outputs["loss3/classifier"]
  return depths


def _mixed5b_side(size: int) -> int:
  """Caffe arithmetic: conv1 floors, the four stride-2 max pools ceil."""
  size = (size + 2 * 3 - 7) // 2 + 1
  for _ in range(4):
    size = -(-(size - 3) // 2) + 1
  return size


def _count_convs(fn, *args) -> int:
  jaxpr = jax.make_jaxpr(fn)(*args)
  return sum(e.primitive.name == "conv_general_dilated" for e in jaxpr.eqns)


def _flops(fn, *args) -> float:
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older jax returned one dict per device.
    cost = cost[0]
  return float(cost["flops"])


@pytest.fixture(scope="module")
def acts224(googlenet, sample_dir):
  model, params = googlenet
  return jax.jit(model.apply)(params, _photo(sample_dir, 224))


def test_all_layers_at_224_match_metadata(googlenet, acts224):
  model, _ = googlenet
  assert set(acts224) == set(model.layer_names)
  for layer in model.layers:
    shape = acts224[layer.name].shape
    if layer.spatial:
      side = 224 // layer.stride
      assert shape == (1, side, side, layer.depth), (layer, shape)
    else:
      assert shape == (1, layer.depth), (layer, shape)
  # Known 224 px sizes from deploy.prototxt.
  assert acts224["conv2d0"].shape == (1, 112, 112, 64)
  assert acts224["maxpool0"].shape == (1, 56, 56, 64)
  assert acts224["maxpool1"].shape == (1, 28, 28, 192)
  assert acts224["mixed4c"].shape == (1, 14, 14, 512)
  assert acts224["mixed5b"].shape == (1, 7, 7, 1024)
  np.testing.assert_allclose(np.asarray(acts224["probs"]).sum(), 1.0, rtol=1e-5)
  assert int(np.argmax(acts224["logits"])) == 1  # goldfish


def test_metadata_matches_prototxt(googlenet, data_root):
  model, _ = googlenet
  expected = _prototxt_depths(data_root)
  assert len(expected) == 10  # nine blocks and the classifier
  for name, depth in expected.items():
    assert model.layer(name).depth == depth, name
  spot = {"conv2d0": (64, 2), "conv2d2": (192, 4), "mixed3a": (256, 8),
          "mixed3b": (480, 8), "mixed4a": (512, 16), "mixed4c": (512, 16),
          "mixed4e": (832, 16), "mixed5b": (1024, 32), "mixed4c_3x3": (256, 16),
          "mixed4c_5x5_bottleneck": (24, 16), "logits": (1000, 0)}
  for name, (depth, stride) in spot.items():
    layer = model.layer(name)
    assert (layer.depth, layer.stride) == (depth, stride), layer
  assert not model.layer("logits").spatial and model.layer("mixed4c").spatial
  assert model.index("mixed4c") > model.index("mixed3b")
  assert model.deepest(["mixed4c", "conv2d0", "mixed3a"]) == "mixed4c"


def test_unknown_layer_lists_valid_ones(googlenet):
  model, params = googlenet
  with pytest.raises(UnknownLayerError) as info:
    model.layer("mixed9z")
  message = str(info.value)
  assert "mixed9z" in message and "mixed4c" in message and "logits" in message
  assert isinstance(info.value, KeyError)
  with pytest.raises(UnknownLayerError, match=r"mixed4f.*Valid layers:.*mixed4e"):
    model.apply(params, jnp.zeros((1, 64, 64, 3)), layers=("mixed4f",))
  with pytest.raises(UnknownLayerError):
    model.check_layers(["conv2d0", "not_a_layer"])
  with pytest.raises(models.UnknownModelError, match="bvlc_googlenet"):
    models.get("inception_v9")


def test_relu_and_branch_concat(googlenet, acts224):
  model, _ = googlenet
  for block in ("mixed3a", "mixed4c", "mixed5b"):
    out = np.asarray(acts224[block])
    pre = np.asarray(acts224[block + "_pre_relu"])
    np.testing.assert_array_equal(out, np.maximum(pre, 0))
    branches = [f"{block}_{b}" for b in ("1x1", "3x3", "5x5", "pool_reduce")]
    np.testing.assert_array_equal(
        np.concatenate([np.asarray(acts224[b]) for b in branches], -1), out)
    np.testing.assert_array_equal(
        np.concatenate([np.asarray(acts224[b + "_pre_relu"]) for b in branches],
                       -1), pre)
    assert sum(model.layer(b).depth for b in branches) == model.layer(block).depth
  for conv in ("conv2d0", "conv2d1", "conv2d2"):
    np.testing.assert_array_equal(
        np.asarray(acts224[conv]), np.maximum(np.asarray(acts224[conv + "_pre_relu"]), 0))
  assert (np.asarray(acts224["mixed4c_pre_relu"]) < 0).any()


def test_head_is_global_average_pool(googlenet, acts224):
  _, params = googlenet
  mixed5b = np.asarray(acts224["mixed5b"], np.float64)
  avg = mixed5b.mean(axis=(1, 2))  # = Caffe's 7x7 AVE pool at 224 px
  np.testing.assert_allclose(acts224["avgpool"], avg, rtol=1e-5, atol=1e-6)
  head = googlenet[0].classifier_params(params)
  w = np.asarray(head["kernel"], np.float64)
  b = np.asarray(head["bias"], np.float64)
  np.testing.assert_allclose(acts224["logits"], avg @ w + b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [31, 50, 97, 300, (80, 150)])
def test_any_input_size_at_least_min_size(googlenet, sample_dir, size):
  model, params = googlenet
  x = _photo(sample_dir, size)
  out = jax.jit(lambda p, x: model.apply(
      p, x, layers=("mixed5b", "avgpool", "logits")))(params, x)
  assert out["logits"].shape == (1, 1000)
  assert np.isfinite(np.asarray(out["logits"])).all()
  h, w = x.shape[1:3]
  assert out["mixed5b"].shape[1:] == (_mixed5b_side(h), _mixed5b_side(w), 1024)
  np.testing.assert_allclose(out["avgpool"],
                             np.asarray(out["mixed5b"]).mean(axis=(1, 2)),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 30, 30, 3), (1, 224, 30, 3)])
def test_too_small_input_raises(googlenet, shape):
  model, params = googlenet
  with pytest.raises(ValueError, match=r"at least 31 px"):
    model.apply(params, jnp.zeros(shape))


def test_declared_min_size_is_the_true_minimum(googlenet):
  """The spec's min_size is where a map first empties (abstract evaluation)."""
  model, params = googlenet
  spec = inception_v1.BVLC_GOOGLENET
  assert model.min_size == spec.min_size
  unchecked = dataclasses.replace(spec, min_size=1)
  apply = lambda p, x: inception_v1.InceptionV1(unchecked).apply(p, x)
  assert flax_adapter.infer_min_size(apply, params, 224) == spec.min_size
  below = jax.ShapeDtypeStruct((1, spec.min_size - 1, spec.min_size - 1, 3), jnp.float32)
  shapes = jax.eval_shape(apply, params, below)
  assert min(min(s.shape[1:3]) for s in shapes.values() if len(s.shape) == 4) == 0


def test_bad_image_layout_raises(googlenet):
  model, params = googlenet
  with pytest.raises(ValueError, match="NHWC"):
    model.apply(params, jnp.zeros((1, 3, 224, 224)))


def test_deterministic_on_cpu(googlenet, sample_dir):
  model, params = googlenet
  x = np.concatenate([_photo(sample_dir, 224),
                      _photo(sample_dir, 224, "n01530575_brambling.jpg")])
  f = jax.jit(lambda p, x: model.apply(p, x, layers=("logits",))["logits"])
  first = np.asarray(f(params, x))
  second = np.asarray(f(params, x))
  # A separately traced and compiled function gives the same bits too.
  g = jax.jit(lambda p, x: model.apply(p, x)["logits"])
  third = np.asarray(g(params, x))
  assert first.tobytes() == second.tobytes()
  assert first.tobytes() == third.tobytes()


def test_layers_stops_early(googlenet):
  model, params = googlenet
  x = jnp.zeros((1, 224, 224, 3))
  out = model.apply(params, x, layers=("mixed3b",))
  assert set(out) == {"mixed3b"} and out["mixed3b"].shape == (1, 28, 28, 480)
  out = model.apply(params, x, layers=["conv2d0", "mixed3a_5x5_pre_relu"])
  assert set(out) == {"conv2d0", "mixed3a_5x5_pre_relu"}
  assert set(model.apply(params, x, layers="maxpool1")) == {"maxpool1"}

  early = lambda p, x: model.apply(p, x, layers=("mixed3b",))["mixed3b"]
  full = lambda p, x: model.apply(p, x)["logits"]
  # Structure: 3 stem convs + 4 per block (fused 1x1 reduce, 3x3, 5x5, pool
  # proj); no mixed4*/5* convolution is even traced when stopping at mixed3b.
  assert _count_convs(early, params, x) == 3 + 2 * 4
  assert _count_convs(full, params, x) == 3 + 9 * 4
  # Compiled cost: the stem + mixed3a/3b are ~58% of the network's FLOPs.
  ratio = _flops(early, params, x) / _flops(full, params, x)
  expected = _analytic_macs(model, "mixed3b") / _analytic_macs(model, None)
  print(f"flops(mixed3b) / flops(logits) = {ratio:.3f} (analytic {expected:.3f})")
  assert abs(ratio - expected) < 0.05, (ratio, expected)
  assert ratio < 0.7


def _analytic_macs(model, stop) -> float:
  """Multiply-accumulates of the convolutions (and classifier) at 224 px."""
  from atlasjax.models import inception_v1 as iv1
  macs, depth, side = 0.0, 3, 224
  for op in iv1.BVLC_GOOGLENET.ops:
    if isinstance(op, iv1.Conv):
      side //= op.stride
      macs += side * side * op.kernel ** 2 * depth * op.features
      depth = op.features
    elif isinstance(op, iv1.MaxPool):
      side = -(-side // op.stride)
    elif isinstance(op, iv1.Inception):
      hw = side * side
      macs += hw * depth * (op.c1x1 + op.c3x3_reduce + op.c5x5_reduce + op.pool_proj)
      macs += hw * 9 * op.c3x3_reduce * op.c3x3 + hw * 25 * op.c5x5_reduce * op.c5x5
      depth = op.depth
    if getattr(op, "name", None) == stop:
      return macs
  return macs + depth * 1000
