"""SigLIP / SigLIP 2 image towers, PaliGemma's encoder and big_vision's whole
ViT family (issue 30): the loader against checkpoints written in exactly
big_vision's layout, a plain-NumPy forward pass, So400m/14's parameter count
from big_vision's module definitions, and the one-line refusals.

The synthetic files follow big_vision's own code, not atlasjax's writer:
``two_towers.Model`` names its towers ``img`` and ``txt`` beside the
parameters ``t`` and ``b``; a SigLIP image tower is ``vit._Model`` with
``pool_type="map"`` (``MAPHead_0``) and, with ``scan=True``, its blocks
stacked in ``Transformer/encoderblock``; the text tower is
``text_transformer._Model`` (``Embed_0``, ``Encoder_0``); ``utils.load_params``
strips ``params/``. The text tower is filled with NaN: a loader that read it
would refuse the file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import pathlib
import types

import jax
import numpy as np
import pytest

import big_vision_files as files
from atlasjax import models, readers
from atlasjax.models import vit
from big_vision_files import GRID, HEADS, MLP, SIZE, WIDTH, DEPTH, PATCH

_SPEC = importlib.util.spec_from_file_location(
    "atlasjax_tests_numpy_reference", pathlib.Path(__file__).with_name("numpy_reference.py"))
ref = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ref)

@pytest.fixture(scope="module")
def images():
  return np.asarray(jax.random.uniform(jax.random.PRNGKey(3), (2, SIZE, SIZE, 3)))


def apply(model, params, images01, layers):
  return jax.jit(model.apply, static_argnames="layers")(params, images01, layers=layers)


def numpy_outputs(arrays, images01, pool, prefix="params/img/"):
  tree = ref.bv_tree(arrays, prefix)
  return [ref.big_vision_vit(tree, im.astype(np.float64) * 2 - 1, pool) for im in images01]


def test_siglip_two_tower_loads_by_inference_and_matches_numpy(tmp_path, images, caplog):
  """A SigLIP file (scanned MAP tower, no head) through ``big_vision``: the
  architecture is inferred from shapes and said in one line, only ``img/``
  is read (``txt/`` is NaN), and the MAP head's pooled vector, the
  embedding and an MLP hidden layer equal the NumPy forward pass."""
  arrays = files.random_arrays(files.two_tower(files.vit_layout()))
  path = files.write(tmp_path, "siglip.npz", arrays)
  with caplog.at_level(logging.INFO, logger="atlasjax"):
    model, params = models.load("big_vision", weights=path)
  (line,) = [r.getMessage() for r in caplog.records if "siglip.npz" in r.getMessage()]
  for part in ("SigLIP two-tower", "width 32, depth 2, 4 heads, MLP 64, patch 8",
               "pool map", "learned 4×4 position embedding → 32 px",
               "no head (embedding: pre_logits, 32)"):
    assert part in line, line
  assert models.get("big_vision", weights=path) is model   # one build per architecture
  layers = ("map_head/pooled", "head_input", "pre_logits", "block1/mlp/fc2:input")
  acts = apply(model, params, images, layers)
  want = numpy_outputs(arrays, images, "map")
  for got_name, want_name in (("map_head/pooled", "map_pooled"),
                              ("head_input", "head_input"), ("pre_logits", "pre_logits")):
    np.testing.assert_allclose(acts[got_name], [w[want_name] for w in want],
                               rtol=1e-4, atol=1e-4)
  hidden = np.stack([w["block1/mlp/hidden"].reshape(GRID, GRID, MLP) for w in want])
  np.testing.assert_allclose(acts["block1/mlp/fc2:input"], hidden, rtol=1e-4, atol=1e-4)
  assert model.layer("map_head/mlp/fc2:input").depth == MLP      # a renderable vector
  assert "logits" not in model.layer_names                       # no head, no logits


@pytest.mark.parametrize("case", [
    dict(pool="gap", posemb="sincos2d", rep=24, classes=5, scan=False, patch=32),
    dict(pool="tok", registers=2, classes=5, scan=False),
    dict(pool="none", classes=12, scan=True, paligemma=True),
], ids=["gap-sincos-prelogits", "tok-registers", "paligemma-none"])
def test_every_head_matches_numpy(tmp_path, images, case):
  """GAP with sin-cos position embedding and a ``rep_size`` layer, CLS with
  registers, PaliGemma's unpooled encoder (``img/`` beside ``llm/``, its head
  on every token): inferred and equal to NumPy."""
  case = dict(case)
  paligemma = case.pop("paligemma", False)
  shapes = files.two_tower(files.vit_layout(**case), text=not paligemma)
  if paligemma:
    shapes["params/llm/embedder/input_embedding"] = (7, 12)
  arrays = files.random_arrays(shapes)
  model, params = models.load("big_vision", weights=files.write(tmp_path, "m.npz", arrays))
  if case.get("posemb") == "sincos2d":   # no grid in the file: big_vision's 224 px
    assert model.input_size == vit.DEFAULT_SINCOS_SIZE
    images = np.asarray(jax.random.uniform(jax.random.PRNGKey(4), (2, 224, 224, 3)))
  want = numpy_outputs(arrays, images, case["pool"])
  logits = apply(model, params, images, ("logits",))["logits"]
  expected = np.stack([w["logits"] for w in want])
  if case["pool"] == "none":       # [B, h·w, E] in big_vision, the token grid here
    expected = expected.reshape(2, GRID, GRID, -1)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
  assert np.abs(expected).max() > 0.3


def test_so400m14_parameter_count_matches_big_vision_definition():
  """So400m/14 (SigLIP, 224 px, MAP head, no head): 427,680,704 parameters
  by abstract evaluation, equal to the count from big_vision's module
  definitions (numpy_reference.big_vision_vit_params), and the shortcut is
  what the loader infers from the published file's shapes (384 px too)."""
  spec = vit.TOWER_SPECS["siglip_so400m14"]
  width, depth, mlp, heads = 1152, 27, 4304, 16     # big_vision decode_variant("So400m")
  want = ref.big_vision_vit_params(width, depth, mlp, heads, 14, 16 * 16, "map")
  assert vit.param_count(spec) == want == 427_680_704
  for name, grid in (("siglip_so400m14", 16), ("siglip_so400m14_384", 27)):
    members = {k: types.SimpleNamespace(shape=s) for k, s in files.two_tower(
        files.vit_layout(width, depth, mlp, heads, 14, grid)).items()}
    inferred = vit.infer_spec(members, name=name)
    assert inferred == vit.TOWER_SPECS[name]


def test_decode_variant_table_and_patch_syntax():
  """Every size of big_vision's decode_variant, and its ``"So400m/14"`` syntax."""
  big_vision = {  # big_vision/models/vit.py decode_variant: width, depth, mlp, heads
      "mu": (32, 1, 128, 2), "Ti": (192, 12, 768, 3), "S": (384, 12, 1536, 6),
      "M": (512, 12, 2048, 8), "B": (768, 12, 3072, 12), "L": (1024, 24, 4096, 16),
      "So400m": (1152, 27, 4304, 16), "H": (1280, 32, 5120, 16),
      "g": (1408, 40, 6144, 16), "g-opt": (1536, 40, 6144, 16),
      "G": (1664, 48, 8192, 16), "G-opt": (1536, 48, 8192, 16),
      "e": (1792, 56, 15360, 16)}
  for size, dims in big_vision.items():
    spec = vit.variant(f"{size}/14")
    assert (spec.width, spec.depth, spec.mlp_dim, spec.num_heads, spec.patch) == dims + (14,)
  assert vit.variant("so400m", 16).width == 1152 and vit.variant("g/14").width == 1408
  assert vit.variant_label(vit.variant("G/14")) == "G/14"
  with pytest.raises(ValueError, match="big_vision's sizes"):
    vit.variant("g-OPT/16")          # ambiguous in lower case: g-opt or G-opt
  assert set(vit.TOWER_SPECS) == set(models.TOWER_MODELS) <= set(models.available())


def _one_line(excinfo, *parts):
  message = str(excinfo.value)
  assert "\n" not in message and isinstance(excinfo.value, readers.FileFormatError)
  for part in parts:
    assert part in message, message


def test_damaged_and_misfitting_files_are_refused_in_one_line(tmp_path):
  good = files.random_arrays(files.two_tower(files.vit_layout(), text=False))
  bad = dict(good, **{"params/img/MAPHead_0/probe": np.full((1, 1, WIDTH), np.inf, np.float32)})
  with pytest.raises(vit.WeightsError) as e:
    models.load("big_vision", weights=files.write(tmp_path, "inf.npz", bad))
  _one_line(e, "MAPHead_0/probe holds NaN or infinite")
  data = files.write(tmp_path, "good.npz", good).read_bytes()
  (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
  with pytest.raises(vit.WeightsError) as e:
    models.load("big_vision", weights=tmp_path / "cut.npz")
  _one_line(e, "cut.npz", "truncated or damaged")
  np.save(tmp_path / "one.npy", np.zeros(3))
  (tmp_path / "one.npz").write_bytes((tmp_path / "one.npy").read_bytes())
  with pytest.raises(vit.WeightsError) as e:
    models.load("big_vision", weights=tmp_path / "one.npz")
  _one_line(e, "single .npy array")
  flat = dict(good, **{"params/img/pos_embedding": np.zeros(GRID * GRID * WIDTH, np.float32)})
  with pytest.raises(vit.WeightsError) as e:
    models.load("big_vision", weights=files.write(tmp_path, "flat.npz", flat))
  _one_line(e, "pos_embedding has shape (512,)")
  odd = dict(good, **{"params/img/pos_embedding": np.zeros((1, 15, WIDTH), np.float32)})
  with pytest.raises(vit.WeightsError) as e:
    models.load("big_vision", weights=files.write(tmp_path, "odd.npz", odd))
  _one_line(e, "15 entries, not a square grid")
  spec = dataclasses.replace(vit.TOWER_SPECS["siglip_b16"], width=WIDTH, depth=DEPTH,
                             mlp_dim=MLP, num_heads=HEADS, patch=PATCH, image_size=48)
  with pytest.raises(vit.WeightsError) as e:
    vit.load_variables(spec, tmp_path / "good.npz", resample=False)
  _one_line(e, "4×4 grid (32 px)", "needs 6×6 (48 px)", "resample=True")
  resampled = vit.load_variables(spec, tmp_path / "good.npz")   # asked for: bilinear
  assert resampled["params"]["pos_embedding"].shape == (1, 36, WIDTH)
  with pytest.raises(vit.WeightsError) as e:
    models.get("big_vision")
  _one_line(e, "weights=FILE")
