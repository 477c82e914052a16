"""Vision Transformers through ``from_flax``: a linen and an NNX ViT the project
has never seen (random weights, CLS token, learned position embeddings) expose
every block's token output and the MLP hidden layer as spatial layers on the
patch grid, no attention internal as an image, tokens row-major, perturbation
on patch tokens (checked against ``jax.jacrev`` of the module), and a fixed
input size that every other size is resampled to."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vit_toy as toy
from atlasjax import models
from atlasjax.atlas import collect
from atlasjax.classic import attribution
from atlasjax.models import base, flax_adapter
from atlasjax.models import vit as vit_zoo

# Layer names per dialect: (block output, MLP hidden = gelu(fc1), fc1, block prefix).
NAMES = {
    "linen": dict(block="block{}", hidden="block{}/fc2:input", fc1="block{}/fc1"),
    "nnx": dict(block="blocks/{}", hidden="blocks/{}/mlp/fc2:input", fc1="blocks/{}/mlp/fc1"),
}
STRIDE = toy.SIZE // toy.GRID
_LAST = f"block{toy.DEPTH - 1}"             # the linen ViT's last block


@pytest.fixture(scope="module")
def linen_vit():
  module, variables = toy.linen_vit()
  model, params = models.from_flax(module, variables, input_size=toy.SIZE)
  return model, params, module, variables


@pytest.fixture(scope="module")
def nnx_vit():
  module = toy.nnx_vit()
  model, params = models.from_flax(module, input_size=toy.SIZE)
  return model, params, module, None


@pytest.fixture(params=["linen", "nnx"])
def vit(request):
  return request.param, request.getfixturevalue(f"{request.param}_vit")


def _images(n=2, size=toy.SIZE, seed=1):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, size, size, 3))


def _name(kind, what, i):
  return NAMES[kind][what].format(i)


def test_blocks_and_mlp_hidden_are_spatial_layers_on_the_patch_grid(vit):
  kind, (model, params, _, _) = vit
  for i in range(toy.DEPTH):
    for what, depth in (("block", toy.WIDTH), ("hidden", toy.MLP)):
      layer = model.layer(_name(kind, what, i))
      assert (layer.depth, layer.stride) == (depth, STRIDE)
  assert model.layer("patch_embed").stride == STRIDE
  assert model.fixed_input_size and model.min_size == 1
  outputs = jax.eval_shape(model.apply, params, _images())
  assert set(outputs) == set(model.layer_names)          # apply returns the layers only
  for layer in model.layers:
    expected = ((2, toy.GRID, toy.GRID, layer.depth) if layer.spatial
                else (2, layer.depth))
    assert outputs[layer.name].shape == expected, layer.name


def test_no_attention_internal_is_a_layer(vit):
  """query/key/value are [B, N, heads, head_dim]; the out projection's input too."""
  kind, (model, params, _, _) = vit
  for name in model.layer_names:
    assert not name.rsplit("/", 1)[-1].startswith(("query", "key", "value")), name
    assert not name.endswith("attn/out:input"), name
  query = _name(kind, "block", 0) + "/attn/query"
  with pytest.raises(base.UnknownLayerError, match="attention internals"):
    model.apply(params, _images(), layers=(query,))


def _linen_tokens(module, variables, images, name):
  """The module's own ``[B, N, D]`` output of submodule ``name`` (capture_intermediates)."""
  _, state = jax.jit(lambda v, x: module.apply(v, x, capture_intermediates=True))(
      variables, images)
  node = state["intermediates"]
  for part in name.split("/"):
    node = node[part]
  return node["__call__"][0]


def _nnx_block_tokens(module, images, upto):
  """The NNX ViT's forward written out again, up to block ``upto``'s output."""
  x = module.patch_embed(images)
  b, h, w, d = x.shape
  x = jnp.concatenate([jnp.broadcast_to(module.cls[...], (b, 1, d)),
                       x.reshape(b, h * w, d)], 1) + module.pos_embed[...]
  for block in list(module.blocks)[:upto + 1]:
    x = block(x)
  return x


def _raw_block_tokens(kind, module, variables, images, i):
  if kind == "linen":
    return _linen_tokens(module, variables, images, f"block{i}")
  return _nnx_block_tokens(module, images, i)


def test_tokens_map_row_major_and_hidden_is_gelu_of_fc1(vit):
  kind, (model, params, module, variables) = vit
  images = _images()
  acts = jax.jit(model.apply)(params, images)
  tokens = np.asarray(_raw_block_tokens(kind, module, variables, images, 1))
  grid = np.asarray(acts[_name(kind, "block", 1)])
  for r in range(toy.GRID):
    for c in range(toy.GRID):                     # CLS is token 0, then row-major
      np.testing.assert_allclose(grid[:, r, c], tokens[:, 1 + r * toy.GRID + c],
                                 rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(acts[_name(kind, "hidden", 2)],
                             jax.nn.gelu(acts[_name(kind, "fc1", 2)]), rtol=1e-5, atol=1e-6)


def _logits_from_block0(kind, module, variables, tokens, grid):
  """Logits with block0's patch tokens replaced by ``grid``, written against the module."""
  b = tokens.shape[0]
  x = jnp.concatenate([tokens[:, :1], grid.reshape(b, toy.GRID * toy.GRID, -1)], 1)
  if kind == "linen":
    p = variables["params"]
    for i in range(1, toy.DEPTH):
      x = toy.LinenBlock().apply({"params": p[f"block{i}"]}, x)
    x = nn.LayerNorm().apply({"params": p["norm"]}, x)
    return nn.Dense(toy.CLASSES).apply({"params": p["head"]}, x[:, 0])
  for block in list(module.blocks)[1:]:
    x = block(x)
  return module.head(module.norm(x)[:, 0])


def test_token_attributions_equal_jacrev_of_the_module(vit):
  """collect's JVP through perturb on a token layer == jax.jacrev of the module.

  (block0, not a later block: the last block reads a patch token only through
  LayerNorm, which is blind to the token's own scale, so the attribution
  ``J · a`` of the block right before the head is zero.)
  """
  kind, (model, params, module, variables) = vit
  layer = _name(kind, "block", 0)
  images = _images()
  positions = np.array([[[1, 2], [3, 0]]], np.int32)
  out = collect.make_sample_fn(model, (layer,), True)(params, images, positions)
  tokens = _raw_block_tokens(kind, module, variables, images, 0)
  grid = flax_adapter.TokenGrid(1, toy.GRID, toy.GRID).to_grid(tokens)
  jac = jax.jit(jax.jacrev(
      lambda g: _logits_from_block0(kind, module, variables, tokens, g)))(grid)
  for b, (r, c) in enumerate(positions[0]):
    expected = jac[b, :, b, r, c, :] @ grid[b, r, c]
    np.testing.assert_allclose(np.asarray(out[f"attributions/{layer}"][b], np.float32),
                               expected, rtol=3e-3, atol=3e-4)
    assert np.abs(expected).max() > 1e-3


def test_fixed_input_size_resamples_other_sizes(linen_vit):
  """(Gradients through the resampling: the 40 px renders of test_flax_vit_stages.)"""
  model, params, module, variables = linen_vit
  big = _images(size=48)
  resized = jax.image.resize(big, (2, toy.SIZE, toy.SIZE, 3), "linear")
  logits = jax.jit(lambda p, x: model.apply(p, x, layers=("logits",)))(params, big)
  np.testing.assert_allclose(logits["logits"], jax.jit(module.apply)(variables, resized),
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(Exception):               # the module itself takes one size only
    jax.eval_shape(module.apply, variables, big)


def test_truncated_forward_stops_after_the_block(linen_vit):
  model, params, _, _ = linen_vit
  jaxpr = jax.make_jaxpr(lambda p, x: model.apply(p, x, layers=("block0/fc2:input",)))(
      params, _images())
  dots = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
  # block0: q, k, v, scores, weighted values, out projection, fc1.
  assert len(dots) == 7


class PatchDenseViT(nn.Module):
  """Patches embedded by a reshape and a Dense (no strided map to infer the grid from)."""

  @nn.compact
  def __call__(self, images):
    b, side = images.shape[:2]
    grid = side // toy.PATCH
    x = images.reshape(b, grid, toy.PATCH, grid, toy.PATCH, 3)
    x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, grid * grid, -1)
    x = nn.Dense(toy.WIDTH, name="embed")(x)
    x = toy.LinenBlock(name="block0")(x)
    return nn.Dense(toy.CLASSES, name="head")(x.mean(axis=1))


def test_token_grid_argument_for_patches_embedded_without_a_convolution():
  module = PatchDenseViT()
  variables = jax.jit(module.init)(jax.random.PRNGKey(0), _images(1))
  inferred, _ = models.from_flax(module, variables, input_size=toy.SIZE)
  assert not any(l.spatial for l in inferred.layers)
  model, _ = models.from_flax(module, variables, input_size=toy.SIZE,
                              token_grid=(toy.GRID, toy.GRID))
  assert model.layer("block0").stride == STRIDE and model.layer("embed").stride == STRIDE
  assert not model.fixed_input_size                         # no position embedding
  assert model.layer("head:input").stride == 0              # the token mean, a vector


class BigVisionStyle(nn.Module):
  """Returns big_vision's ``(x, out)`` with a nested dict of named stages."""

  @nn.compact
  def __call__(self, images):
    out = {}
    x = out["stem"] = nn.Conv(toy.WIDTH, (toy.PATCH,) * 2, toy.PATCH, padding="VALID")(images)
    x = x.reshape(x.shape[0], -1, toy.WIDTH)
    out["encoder"] = {"block00": {"+mlp": nn.gelu(x)}}
    out["pre_logits"] = x.mean(axis=1)
    x = out["logits"] = nn.Dense(toy.CLASSES)(out["pre_logits"])
    return x, out


def test_big_vision_tuple_of_nested_outputs_is_read_as_is():
  module = BigVisionStyle()
  variables = jax.jit(module.init)(jax.random.PRNGKey(0), _images(1))
  model, params = models.from_flax(module, variables, input_size=toy.SIZE)
  names = [(l.name, l.stride) for l in model.layers]
  for expected in (("stem", STRIDE), ("encoder/block00/+mlp", STRIDE),
                   ("pre_logits", 0), ("logits", 0)):
    assert expected in names
  x = _images()
  _, out = module.apply(variables, x)
  np.testing.assert_allclose(model.apply(params, x)["encoder/block00/+mlp"],
                             out["encoder"]["block00"]["+mlp"].reshape(2, toy.GRID, toy.GRID, -1),
                             rtol=1e-6)


def test_default_layer_is_the_middle_mlp_hidden_layer(vit):
  """Ghiasi's unit in the middle block, as the zoo's ViTs (not a LayerNorm)."""
  kind, (model, _, _, _) = vit
  assert model.default_layer == _name(kind, "hidden", toy.DEPTH // 2)


def test_default_layer_without_mlp_hidden_layers_is_the_middle_block(linen_vit):
  """With no ``:input`` MLP hidden layer, the residual stream: the blocks'
  outputs (not their sub-layers, not the final norm)."""
  _, _, module, variables = linen_vit
  model, _ = models.from_flax(
      module, variables, input_size=toy.SIZE,
      layers=("patch_embed", "block0", "block0/fc1", "block1/ln2", "block1",
              "block2", "norm", "logits"))
  assert model.default_layer == "block1"


def test_zoo_vit_default_is_the_adapters_rule():
  """vit.build gives no default layer: the adapter's rule finds
  ``block{depth//2}/mlp/fc2:input`` (an odd depth: the middle block)."""
  spec = vit_zoo.ViTSpec(name="vit_default_test", width=16, depth=5, mlp_dim=32,
                         num_heads=2, patch=8, image_size=16, num_classes=3)
  assert vit_zoo.build(spec).default_layer == "block2/mlp/fc2:input"


def test_grad_cam_reached_layers_agree_with_large_perturbations(linen_vit):
  """With a CLS-token head the last block's patch tokens reach no logit (only
  the final per-token LayerNorm reads them), so Grad-CAM there is zero by
  construction. Checked independently of gradients: a large offset on a
  layer the logits do not depend on leaves them as they are; on a reached
  layer it moves them."""
  model, params, _, _ = linen_vit
  images, classes = _images(), jnp.array([1, 4])
  layers = (_LAST, f"{_LAST}/ln1", "norm")
  reached = attribution.reached_layers(model, params, images, classes, layers)
  assert reached == (f"{_LAST}/ln1",)

  @jax.jit
  def moved(params, images):
    plain = model.apply(params, images, layers=("logits",))["logits"]
    grids = model.apply(params, images, layers=layers)
    return {l: jnp.abs(model.apply(
        params, images, layers=("logits",),
        perturb={l: 10.0 * jax.random.normal(jax.random.PRNGKey(4), g.shape)}
    )["logits"] - plain).max() for l, g in grids.items()}

  for layer, change in moved(params, images).items():
    assert (change > 1e-2) == (layer in reached) and (change < 1e-5 or change > 1e-2), (
        layer, change)


def test_grad_cam_deepest_reached_layer_is_the_last_blocks_ln1(linen_vit, toy):
  model, params, _, _ = linen_vit
  images, classes = _images(), jnp.array([1, 4])
  assert attribution.deepest_reached_layer(model, params, images, classes) == f"{_LAST}/ln1"
  # A GAP-head CNN: its last spatial (perturbable) layer, as Grad-CAM's paper.
  cnn, cnn_params = toy
  x = jax.random.uniform(jax.random.PRNGKey(5), (2, 16, 16, 3))
  assert attribution.deepest_reached_layer(cnn, cnn_params, x, classes) == "conv2"
