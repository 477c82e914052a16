"""The big_vision ViT, its checkpoint loader, and the ViT zoo entries.

The loader is checked against checkpoints written in the exact key layout and
shapes of the published files (:func:`augreg_layout`: the AugReg ``.npz``
names, pre-linen module numbering, position embedding inside ``Transformer``
with the CLS token's entry): small random ones whose logits are recomputed by
a plain-NumPy ViT reading the file's raw keys (so the renames, the CLS/posemb
fold and the module agree with the file's own meaning), and the real ViT-B/16
layout by shape only (``jax.eval_shape``, no memory).
"""

from __future__ import annotations

import math

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax import models
from atlasjax.models import vit

TINY = vit.ViTSpec(name="vit_tiny_test", width=32, depth=2, mlp_dim=64,
                   num_heads=2, patch=8, image_size=32, num_classes=10)
B = "Transformer/encoderblock_{}/"


def augreg_layout(width, depth, mlp_dim, heads, patch, grid, classes):
  """``{key: shape}`` of an AugReg ``.npz`` (ViT with a CLS head), as published.

  The original ``vision_transformer`` code was pre-linen: a block's modules
  are numbered across types (``LayerNorm_0``, ``MultiHeadDotProductAttention_1``,
  ``LayerNorm_2``, ``MlpBlock_3``), the position embedding lives in
  ``Transformer/posembed_input`` and has an entry for the CLS token.
  """
  hd = width // heads
  shapes = {"cls": (1, 1, width), "embedding/kernel": (patch, patch, 3, width),
            "embedding/bias": (width,), "head/kernel": (width, classes),
            "head/bias": (classes,),
            "Transformer/posembed_input/pos_embedding": (1, grid * grid + 1, width),
            "Transformer/encoder_norm/scale": (width,),
            "Transformer/encoder_norm/bias": (width,)}
  for i in range(depth):
    b = B.format(i)
    for ln in ("LayerNorm_0", "LayerNorm_2"):
      shapes[b + ln + "/scale"] = shapes[b + ln + "/bias"] = (width,)
    for qkv in ("query", "key", "value"):
      shapes[b + f"MultiHeadDotProductAttention_1/{qkv}/kernel"] = (width, heads, hd)
      shapes[b + f"MultiHeadDotProductAttention_1/{qkv}/bias"] = (heads, hd)
    shapes[b + "MultiHeadDotProductAttention_1/out/kernel"] = (heads, hd, width)
    shapes[b + "MultiHeadDotProductAttention_1/out/bias"] = (width,)
    shapes[b + "MlpBlock_3/Dense_0/kernel"] = (width, mlp_dim)
    shapes[b + "MlpBlock_3/Dense_0/bias"] = (mlp_dim,)
    shapes[b + "MlpBlock_3/Dense_1/kernel"] = (mlp_dim, width)
    shapes[b + "MlpBlock_3/Dense_1/bias"] = (width,)
  return shapes


def layout_of(spec):
  return augreg_layout(spec.width, spec.depth, spec.mlp_dim, spec.num_heads,
                       spec.patch, spec.grid, spec.num_classes)


def random_checkpoint(spec, seed=0):
  rng = np.random.default_rng(seed)
  return {k: (rng.normal(size=s) * (1.0 if "scale" in k else 0.3)
              + ("scale" in k)).astype(np.float32)
          for k, s in layout_of(spec).items()}


# ---------------------------------------------------------------------------
# A plain-NumPy ViT on the raw AugReg keys (cls concatenated, then posemb added).

def _ln(x, p):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + 1e-6) * p["scale"] + p["bias"]


def _gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _attention(x, p):
  q, k, v = (np.einsum("nd,dhk->nhk", x, p[n]["kernel"]) + p[n]["bias"]
             for n in ("query", "key", "value"))
  logits = np.einsum("qhk,phk->hqp", q, k) / np.sqrt(q.shape[-1])
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  return np.einsum("hqp,phk,hkd->qd", w, v, p["out"]["kernel"]) + p["out"]["bias"]


def numpy_vit(flat, image, patch):
  """Logits of one ``[H, W, 3]`` image in [-1, 1] from AugReg's raw arrays."""
  t = flax.traverse_util.unflatten_dict({k: v.astype(np.float64) for k, v in flat.items()},
                                        sep="/")
  h, w = image.shape[0] // patch, image.shape[1] // patch
  patches = image[:h * patch, :w * patch].reshape(h, patch, w, patch, 3)
  patches = patches.transpose(0, 2, 1, 3, 4).reshape(h * w, -1)
  x = patches @ t["embedding"]["kernel"].reshape(-1, t["embedding"]["kernel"].shape[-1])
  x = x + t["embedding"]["bias"]
  x = np.concatenate([t["cls"][0], x]) + t["Transformer"]["posembed_input"]["pos_embedding"][0]
  for i in range(len([k for k in t["Transformer"] if k.startswith("encoderblock_")])):
    blk = t["Transformer"][f"encoderblock_{i}"]
    x = x + _attention(_ln(x, blk["LayerNorm_0"]), blk["MultiHeadDotProductAttention_1"])
    mlp = blk["MlpBlock_3"]
    y = _ln(x, blk["LayerNorm_2"])
    y = _gelu_tanh(y @ mlp["Dense_0"]["kernel"] + mlp["Dense_0"]["bias"])
    x = x + y @ mlp["Dense_1"]["kernel"] + mlp["Dense_1"]["bias"]
  x = _ln(x, t["Transformer"]["encoder_norm"])
  return x[0] @ t["head"]["kernel"] + t["head"]["bias"]


@pytest.fixture(scope="module")
def images():
  return jax.random.uniform(jax.random.PRNGKey(3), (2, 32, 32, 3), minval=-1, maxval=1)


def test_augreg_checkpoint_matches_a_numpy_vit(images):
  flat = random_checkpoint(TINY)
  variables = vit.convert_checkpoint(flat, TINY)
  logits = np.asarray(vit.ViT(TINY).apply(variables, images))
  want = np.stack([numpy_vit(flat, np.asarray(im, np.float64), TINY.patch)
                   for im in images])
  np.testing.assert_allclose(logits, want, rtol=2e-4, atol=2e-4)
  assert np.abs(want).max() > 0.5  # a checkpoint that moves the logits


def test_current_and_scanned_layouts_load_the_same(images):
  """big_vision's current layout (linen names, posemb at the root, CLS folded)
  and its lax.scan layout (blocks stacked) give the same network."""
  old = vit.convert_checkpoint(random_checkpoint(TINY), TINY)
  current = vit.to_big_vision(old)
  assert "Transformer/encoderblock_1/MlpBlock_0/Dense_1/kernel" in current
  assert "pos_embedding" in current and current["pos_embedding"].shape[1] == 16
  scanned = {k: v for k, v in current.items() if "encoderblock_" not in k}
  for key in (k for k in current if k.startswith(B.format(0))):
    rest = key[len(B.format(0)):]
    scanned["Transformer/encoderblock/" + rest] = np.stack(
        [current[B.format(i) + rest] for i in range(TINY.depth)])
  want = vit.ViT(TINY).apply(old, images)
  for flat in (current, scanned, {"params/" + k: v for k, v in current.items()}):
    got = vit.ViT(TINY).apply(vit.convert_checkpoint(flat, TINY), images)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_real_vit_b16_layout_by_shape():
  """The published ViT-B/16 (ImageNet-1k, 224 px) layout converts and runs,
  abstractly: 1000 logits, and timm's published 86,567,656 parameters less
  the CLS token's position-embedding row (768) that is folded into the CLS
  token."""
  spec = vit.SPECS["vit_b16"]
  flat = {k: jax.ShapeDtypeStruct(s, jnp.float32)
          for k, s in augreg_layout(768, 12, 3072, 12, 16, 14, 1000).items()}
  variables = jax.eval_shape(lambda f: vit.convert_checkpoint(f, spec), flat)
  assert variables["params"]["pos_embedding"].shape == (1, 196, 768)
  assert variables["params"]["block11"]["mlp"]["fc2"]["kernel"].shape == (3072, 768)
  n = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(variables))
  assert n == 86_567_656 - 768
  logits = jax.eval_shape(vit.ViT(spec).apply, variables,
                          jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
  assert logits.shape == (1, 1000)


def test_position_embedding_resampled_to_the_model_grid():
  """A 48 px checkpoint (6×6 grid) into the 32 px model (4×4): bilinear zoom,
  corners kept, as big_vision's resample_posemb."""
  big = dataclasses_replace(TINY, image_size=48)
  flat = random_checkpoint(big)
  params = vit.convert_checkpoint(flat, TINY)["params"]
  pe = np.asarray(params["pos_embedding"]).reshape(4, 4, -1)
  src = flat["Transformer/posembed_input/pos_embedding"][0, 1:].reshape(6, 6, -1)
  np.testing.assert_allclose(pe[0, 0], src[0, 0], atol=1e-5)
  np.testing.assert_allclose(pe[-1, -1], src[-1, -1], atol=1e-5)


def dataclasses_replace(spec, **kw):
  import dataclasses  # pylint: disable=import-outside-toplevel
  return dataclasses.replace(spec, **kw)


def test_checkpoints_that_do_not_fit_fail_in_one_line(tmp_path):
  flat = random_checkpoint(dataclasses_replace(TINY, num_classes=7))
  with pytest.raises(vit.WeightsError, match=r"head/(kernel|bias) has shape \((32, )?7,?\)"):
    vit.convert_checkpoint(flat, TINY)
  flat = random_checkpoint(TINY)
  flat["pre_logits/kernel"] = np.zeros((32, 32), np.float32)
  with pytest.raises(vit.WeightsError, match="unexpected.*pre_logits"):
    vit.convert_checkpoint(flat, TINY)
  with pytest.raises(vit.WeightsError, match="not found"):
    vit.load_variables(TINY, tmp_path / "missing.npz")
  (tmp_path / "bad.npz").write_bytes(b"not a zip")
  with pytest.raises(vit.WeightsError, match="Cannot read"):
    vit.load_variables(TINY, tmp_path / "bad.npz")
  with pytest.raises(vit.WeightsError, match="--weights=PATH"):
    models.load("vit_b16")
  with pytest.raises(models.WeightsFlagError, match="ViT models only"):
    models.load("bvlc_googlenet", weights=tmp_path / "x.npz")


def test_registers_and_gap_head():
  """Registers sit after CLS and before the patches; a GAP head averages the
  patch tokens only (registers and CLS left out)."""
  spec = dataclasses_replace(TINY, registers=3, pool="gap")
  assert spec.prefix_tokens == 3
  variables = vit.init(jax.random.PRNGKey(0), spec)
  assert variables["params"]["registers"].shape == (1, 3, 32)
  assert "cls" not in variables["params"]
  x = jax.random.uniform(jax.random.PRNGKey(1), (1, 32, 32, 3))
  _, state = vit.ViT(spec).apply(variables, x, capture_intermediates=True)
  norm = state["intermediates"]["norm"]["__call__"][0]
  assert norm.shape == (1, 3 + 16, 32)
  head = variables["params"]["head"]
  want = norm[:, 3:].mean(1) @ head["kernel"] + head["bias"]
  got = vit.ViT(spec).apply(variables, x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  tok = dataclasses_replace(TINY, registers=2)
  assert tok.prefix_tokens == 3   # CLS + 2 registers


def test_zoo_entry_loads_a_weights_file(tmp_path):
  """``models.load("vit_ti32", weights=PATH)``: the file's network, behind
  atlasjax's [0, 1] input convention (Ti/32: the cheapest published size)."""
  spec = vit.SPECS["vit_ti32"]
  variables = vit.init(jax.random.PRNGKey(0), spec)
  variables["params"]["head"]["kernel"] = jax.random.normal(
      jax.random.PRNGKey(1), variables["params"]["head"]["kernel"].shape) * 0.05
  path = vit.save_npz(variables, tmp_path / "ti32.npz")
  model, params = models.load("vit_ti32", weights=path)
  assert model.input_size == 224 and model.name == "vit_ti32"
  assert model.layer("embedding").stride == 32
  images = jax.random.uniform(jax.random.PRNGKey(2), (1, 224, 224, 3))
  got = model.apply(params, images, layers=("logits",))["logits"]
  want = vit.ViT(spec).apply(variables, images * 2 - 1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert {"vit_b16", "vit_l32", "vit_s8", "vit_distilled"} <= set(models.available())



def test_zoo_vit_layers_through_the_adapter():
  """Through from_flax: every block's tokens and the MLP hidden layer after
  GELU are [B, h, w, D] on the patch grid (CLS dropped, row-major), no
  attention internal is a layer, and other input sizes are resized."""
  model = vit.build(TINY)
  names = set(model.layer_names)
  assert {"embedding", "block0", "block1", "block1/mlp/fc1",
          "block1/mlp/fc2:input", "norm"} <= names
  assert not any(n.endswith(("query", "key", "value")) for n in names)
  assert model.layer("block1/mlp/fc2:input").depth == TINY.mlp_dim
  assert model.layer("block1").stride == TINY.patch
  assert model.default_layer == "block1/mlp/fc2:input"
  variables = vit.init(jax.random.PRNGKey(0), TINY)
  images = jax.random.uniform(jax.random.PRNGKey(1), (1, 32, 32, 3))
  acts = model.apply(variables, images, layers=("block1/mlp/fc1",
                                                "block1/mlp/fc2:input", "block1"))
  hidden = acts["block1/mlp/fc2:input"]
  assert hidden.shape == (1, TINY.grid, TINY.grid, TINY.mlp_dim)
  np.testing.assert_allclose(hidden, jax.nn.gelu(acts["block1/mlp/fc1"]), atol=1e-6)
  _, state = vit.ViT(TINY).apply(variables, images * 2 - 1, capture_intermediates=True)
  tokens = state["intermediates"]["block1"]["__call__"][0]  # [1, 1 + 16, D]
  np.testing.assert_allclose(acts["block1"][0, 2, 3], tokens[0, 1 + 2 * TINY.grid + 3],
                             atol=1e-6)
  bigger = model.apply(variables, jax.random.uniform(jax.random.PRNGKey(2), (1, 48, 48, 3)),
                       layers=("logits",))["logits"]
  assert bigger.shape == (1, TINY.num_classes)
