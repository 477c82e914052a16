"""Vision Transformers (ViT) after big_vision, and their ``.npz`` checkpoints.

The architecture is big_vision's ``big_vision/models/vit.py`` (Dosovitskiy et
al. 2021; the AugReg checkpoints of Steiner et al. 2022): a ``patch × patch``
stride-``patch`` convolution embeds the image as a grid of tokens, a learned
position embedding is added, optional prefix tokens are put in front (a
learned CLS token for a ``"tok"`` head; *register* tokens, Darcet et al.
2024), then ``depth`` pre-norm encoder blocks

    x = x + attn(ln1(x));   x = x + fc2(gelu(fc1(ln2(x))))

and a final LayerNorm. The head reads the CLS token (``pool="tok"``) or the
mean of the patch tokens (``pool="gap"``). As in big_vision, GELU is the tanh
approximation (``flax.linen.gelu``), LayerNorm's epsilon is 1e-6, the CLS token
is concatenated *after* the position embedding is added, and the module takes
images in [-1, 1] (:data:`INPUT_CONVENTION` maps atlasjax's [0, 1]).

The module is a plain linen module returning the logits; atlasjax sees it
through :func:`atlasjax.models.from_flax`, so every submodule's output is a
named output, by module path:

* ``embedding``: the patch grid ``[B, h, w, D]`` (stride ``patch``);
* ``blockK``: encoder block K's output tokens ``[B, P + h·w, D]``;
* ``blockK/ln1``, ``blockK/attn``: the attention branch (``attn/query`` etc.
  are the heads' ``[B, N, heads, head_dim]`` internals);
* ``blockK/mlp/fc1``: the MLP hidden layer before GELU ``[B, N, mlp_dim]``;
* ``blockK/mlp/fc2:input``: the same after GELU (the *input* of ``fc2``: GELU
  is a function, not a module), the layer Ghiasi et al. 2022 visualize;
* ``norm``, ``head``, ``logits``.

Submodule names are ours (``blockK/mlp/fc1``), not big_vision's
(``Transformer/encoderblock_K/MlpBlock_0/Dense_0``), so layer names read
well; :func:`convert_checkpoint` maps one onto the other (:data:`_BLOCK_RENAMES`).

Checkpoints: big_vision and the AugReg release (``gs://vit_models/augreg/``)
store parameters as an ``.npz`` of arrays keyed by ``/``-joined paths.
:func:`convert_checkpoint` applies the fixes big_vision's ``vit.load`` applies
(``fix_old_checkpoints``): pre-linen module numbering (``LayerNorm_2`` →
``LayerNorm_1``, ``MlpBlock_3`` → ``MlpBlock_0``, via flax's
``convert_pre_linen``), a position embedding stored inside ``Transformer`` (or
in an even older ``posembed_input`` module), one that includes the CLS
token's entry (folded into the CLS token), stacked ``lax.scan`` blocks; and it
resamples the position-embedding grid to the model's input size (bilinear, as
big_vision's ``resample_posemb``). Nothing is downloaded: the file comes from
``weights=PATH``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import re
from typing import Mapping

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage
from flax.training import checkpoints as flax_checkpoints

from atlasjax.models import base

# big_vision's ViTs take images in [-1, 1]: (x - 0.5) / 0.5.
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)
LAYERNORM_EPSILON = 1e-6  # flax's default, which big_vision's ViT uses.
HEAD = "head"
NORM = "norm"
POOLS = ("tok", "gap")
PATCH_SIZES = (8, 16, 32)

# Width, depth, MLP width, heads of the standard sizes (big_vision's
# decode_variant; Table 2 of Zhai et al. 2022, "Scaling Vision Transformers").
VARIANTS = {
    "ti": (192, 12, 768, 3),
    "s": (384, 12, 1536, 6),
    "b": (768, 12, 3072, 12),
    "l": (1024, 24, 4096, 16),
}


class WeightsError(RuntimeError):
  """A ViT checkpoint that is missing, unreadable or of another shape."""


@dataclasses.dataclass(frozen=True)
class ViTSpec:
  """A ViT's architecture as data.

  Attributes:
    name: registry name, e.g. ``"vit_b16"``.
    width: token dimension D.
    depth: number of encoder blocks.
    mlp_dim: hidden width of each block's MLP.
    num_heads: attention heads (``width`` must be a multiple).
    patch: patch side in pixels (the stride of the token grid).
    image_size: the side the position embedding was learned at; the module
      accepts exactly the sizes that give the same ``image_size // patch`` grid.
    num_classes: classifier outputs.
    pool: ``"tok"`` (CLS token) or ``"gap"`` (mean of the patch tokens).
    registers: extra learned prefix tokens (Darcet et al. 2024), dropped by
      the head.
  """
  name: str
  width: int
  depth: int
  mlp_dim: int
  num_heads: int
  patch: int = 16
  image_size: int = 224
  num_classes: int = 1000
  pool: str = "tok"
  registers: int = 0

  def __post_init__(self):
    if self.pool not in POOLS:
      raise ValueError(f"pool={self.pool!r}; use one of {POOLS}")
    if self.width % self.num_heads:
      raise ValueError(f"width {self.width} is not a multiple of num_heads "
                       f"{self.num_heads}")

  @property
  def grid(self) -> int:
    """Patches per side at ``image_size``."""
    return self.image_size // self.patch

  @property
  def prefix_tokens(self) -> int:
    """Tokens in front of the patch tokens: CLS (``"tok"``) and registers."""
    return (self.pool == "tok") + self.registers


def variant(size: str, patch: int, **kw) -> ViTSpec:
  """The standard ``ViT-{size}/{patch}`` (``size`` in ti, s, b, l), e.g. B/16."""
  if size not in VARIANTS or patch not in PATCH_SIZES:
    raise ValueError(f"No ViT-{size}/{patch}; sizes {tuple(VARIANTS)}, patches "
                     f"{PATCH_SIZES}")
  width, depth, mlp_dim, heads = VARIANTS[size]
  return ViTSpec(name=kw.pop("name", f"vit_{size}{patch}"), width=width,
                 depth=depth, mlp_dim=mlp_dim, num_heads=heads, patch=patch, **kw)


# The published-size zoo: ImageNet-1k heads at 224 px with a CLS token, the
# layout of AugReg's ``...--imagenet2012-...-res_224.npz`` files.
SPECS = {spec.name: spec for spec in (variant(s, p) for s in VARIANTS
                                      for p in PATCH_SIZES)}


# A ViT small enough to train on a CPU in half an hour (bench/distill_vit.py
# distils GoogLeNet into it): ViT-Ti's width and heads, 6 blocks, 16 px
# patches at 112 px (a 7×7 token grid), CLS head.
DISTILLED = ViTSpec(name="vit_distilled", width=192, depth=6, mlp_dim=768,
                    num_heads=3, patch=16, image_size=112)
DISTILLED_FILE = "vit_distilled.npz"


def distilled_dir() -> pathlib.Path:
  """Where bench/distill_vit.py works and writes :data:`DISTILLED_FILE`."""
  from atlasjax import data as data_lib  # data imports pooch; only here
  return data_lib.cache_dir() / DISTILLED.name


# ----------------------------------------------------------------------------
# The Flax modules.

class MlpBlock(nn.Module):
  """``fc2(gelu(fc1(x)))``; the GELU output is ``fc2``'s input."""
  mlp_dim: int

  @nn.compact
  def __call__(self, x):
    hidden = nn.gelu(nn.Dense(self.mlp_dim, name="fc1")(x))
    return nn.Dense(x.shape[-1], name="fc2")(hidden)


class EncoderBlock(nn.Module):
  """A pre-norm transformer block: self-attention, then the MLP, each residual."""
  mlp_dim: int
  num_heads: int

  @nn.compact
  def __call__(self, x):
    y = nn.LayerNorm(epsilon=LAYERNORM_EPSILON, name="ln1")(x)
    x = x + nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, deterministic=True, name="attn")(y, y)
    y = nn.LayerNorm(epsilon=LAYERNORM_EPSILON, name="ln2")(x)
    return x + MlpBlock(self.mlp_dim, name="mlp")(y)


class ViT(nn.Module):
  """A ViT built from ``spec``: images in [-1, 1] ``[B, H, W, 3]`` → logits.

  ``H // patch`` and ``W // patch`` must equal ``spec.grid`` (the learned
  position embedding has one entry per patch of that grid).
  """
  spec: ViTSpec

  @nn.compact
  def __call__(self, images):
    spec = self.spec
    x = nn.Conv(spec.width, (spec.patch, spec.patch),
                strides=(spec.patch, spec.patch), padding="VALID",
                name="embedding")(images)
    n, h, w, d = x.shape
    posemb = self.param("pos_embedding", nn.initializers.normal(1 / math.sqrt(d)),
                        (1, spec.grid * spec.grid, d))
    if h * w != posemb.shape[1]:
      raise ValueError(
          f"{spec.name} takes {spec.image_size} px images ({spec.grid}×"
          f"{spec.grid} patches of {spec.patch} px), got a {h}×{w} grid")
    x = x.reshape(n, h * w, d) + posemb
    x = jnp.concatenate([jnp.broadcast_to(t, (n,) + t.shape[1:])
                         for t in self._prefix(d)] + [x], axis=1)
    for i in range(spec.depth):
      x = EncoderBlock(spec.mlp_dim, spec.num_heads, name=f"block{i}")(x)
    x = nn.LayerNorm(epsilon=LAYERNORM_EPSILON, name=NORM)(x)
    pooled = x[:, 0] if spec.pool == "tok" else x[:, spec.prefix_tokens:].mean(1)
    return nn.Dense(spec.num_classes, kernel_init=nn.initializers.zeros,
                    name=HEAD)(pooled)

  def _prefix(self, width):
    """The learned prefix tokens, each ``[1, k, D]``: CLS, then registers."""
    tokens = []
    if self.spec.pool == "tok":
      tokens.append(self.param("cls", nn.initializers.zeros, (1, 1, width)))
    if self.spec.registers:
      tokens.append(self.param("registers", nn.initializers.normal(0.02),
                               (1, self.spec.registers, width)))
    return tokens


def init(key: jax.Array, spec: ViTSpec) -> dict:
  """Random variables ``{"params": ...}`` of ``spec``, for tests and training."""
  size = spec.image_size
  # One compiled program: op-by-op initialisation is many times slower.
  return jax.jit(ViT(spec).init)(key, jnp.zeros((1, size, size, 3), jnp.float32))


def param_shapes(spec: ViTSpec) -> dict:
  """``{"params": ...}`` of ``jax.ShapeDtypeStruct`` (no memory), for checks."""
  return jax.eval_shape(lambda: init(jax.random.PRNGKey(0), spec))


def build(spec: ViTSpec) -> base.Model:
  """The library :class:`~atlasjax.models.base.Model` of ``ViT(spec)``.

  Layers, strides and the token grid are inferred by
  :func:`~atlasjax.models.from_flax` (no layer table): each ``[B, P + h·w, D]``
  token output becomes a ``[B, h, w, D]`` layer with the prefix tokens
  dropped, and any input size is resized to ``image_size``. The default layer is
  the middle block's MLP hidden layer after GELU; CAM applies only to a GAP
  head (with a CLS head the logits do not average the token grid).
  """
  from atlasjax.models import flax_adapter  # imports models' users
  middle = f"block{spec.depth // 2}/mlp/fc2:input"
  return flax_adapter.from_flax(
      ViT(spec), None, name=spec.name, input_size=spec.image_size,
      # The learned position embedding fixes the grid: the adapter resizes
      # every other input size to image_size.
      fixed_input_size=True,
      input_convention=flax_adapter.Normalize(mean=INPUT_MEAN, std=INPUT_STD),
      default_layer=middle, cam_layer=NORM if spec.pool == "gap" else None,
      classifier=("params", HEAD),
      metadata_params=param_shapes(spec))[0]


# ----------------------------------------------------------------------------
# Checkpoints: big_vision / AugReg ``.npz`` files.

# Inside an encoder block, big_vision's module names (after the pre-linen
# renumbering) → ours. The block itself is ``Transformer/encoderblock_K`` →
# ``blockK``; the root's ``Transformer/encoder_norm`` → ``norm``.
_BLOCK_RENAMES = {
    "LayerNorm_0": "ln1",
    "MultiHeadDotProductAttention_0": "attn",
    "LayerNorm_1": "ln2",
    "MlpBlock_0": "mlp",
}
_MLP_RENAMES = {"Dense_0": "fc1", "Dense_1": "fc2"}
_TRANSFORMER = "Transformer"
_BLOCK_PATTERN = re.compile(r"encoderblock_(\d+)$")
_SCAN_BLOCK = "encoderblock"


def read_npz(path: os.PathLike | str) -> dict[str, np.ndarray]:
  """The flat ``{"a/b/c": array}`` of an ``.npz`` (bfloat16 recovered)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise WeightsError(f"ViT weights {path} not found; pass the path of a "
                       "big_vision/AugReg .npz checkpoint (weights=PATH, "
                       "--weights=PATH).")
  try:
    with np.load(path, allow_pickle=False) as npz:
      flat = {k: npz[k] for k in npz.files}
  except (OSError, ValueError) as e:
    raise WeightsError(f"Cannot read {path} as an .npz checkpoint ({e}).") from None
  # np.save writes bfloat16 as a 2-byte void type (big_vision's recover_dtype).
  return {k: (v.view(jnp.bfloat16) if v.dtype.type is np.void and v.itemsize == 2
              else v) for k, v in flat.items()}


def _params_subtree(tree: dict) -> dict:
  """The parameters of a checkpoint saved with or without optimizer state."""
  if "params" in tree:
    return tree["params"]
  if "opt" in tree:  # a Flax optimizer checkpoint
    return tree["opt"]["target"]
  return tree


def _fix_old_layouts(params: dict) -> dict:
  """big_vision's ``fix_old_checkpoints``, without the MAP head (unsupported)."""
  params = flax_checkpoints.convert_pre_linen(params)  # LayerNorm_2 → LayerNorm_1
  params = jax.tree_util.tree_map(lambda x: x, params)  # a copy we may edit
  transformer = params.get(_TRANSFORMER, {})
  if "posembed_input" in transformer:  # the original ViT release
    params["pos_embedding"] = transformer.pop("posembed_input")["pos_embedding"]
  if "pos_embedding" in transformer:  # before 2022: inside the encoder
    params["pos_embedding"] = transformer.pop("pos_embedding")
  pe = params.get("pos_embedding")
  if pe is not None and math.isqrt(pe.shape[1] - 1) ** 2 + 1 == pe.shape[1]:
    # The CLS token used to be concatenated before the position embedding was
    # added: its entry is folded into the CLS token, as big_vision does.
    params["pos_embedding"] = pe[:, 1:]
    if "cls" in params:
      params["cls"] = params["cls"] + pe[:, :1]
  if _SCAN_BLOCK in transformer:  # lax.scan checkpoints stack the blocks
    stacked = transformer.pop(_SCAN_BLOCK)
    depth = len(jax.tree_util.tree_leaves(stacked)[0])
    for i in range(depth):
      transformer[f"encoderblock_{i}"] = jax.tree_util.tree_map(
          lambda x, i=i: x[i], stacked)
  return params


def _rename(params: dict) -> dict:
  """big_vision's module names → ours (see :data:`_BLOCK_RENAMES`)."""
  out = {k: v for k, v in params.items() if k != _TRANSFORMER}
  for name, sub in params.get(_TRANSFORMER, {}).items():
    match = _BLOCK_PATTERN.match(name)
    if name == "encoder_norm":
      out[NORM] = sub
    elif match:
      block = {_BLOCK_RENAMES.get(k, k): v for k, v in sub.items()}
      if "mlp" in block:
        block["mlp"] = {_MLP_RENAMES.get(k, k): v for k, v in block["mlp"].items()}
      out[f"block{match.group(1)}"] = block
    else:
      out[f"{_TRANSFORMER}/{name}"] = sub  # unknown: reported by the shape check
  return out


def resample_posemb(posemb: np.ndarray, grid: int) -> np.ndarray:
  """``[1, g·g, D]`` → ``[1, grid·grid, D]`` by bilinear zoom (big_vision's)."""
  old = math.isqrt(posemb.shape[1])
  if old == grid:
    return posemb
  zoomed = scipy.ndimage.zoom(posemb.reshape(old, old, -1).astype(np.float32),
                              (grid / old, grid / old, 1), order=1)
  return zoomed.reshape(1, grid * grid, -1).astype(posemb.dtype)


def _check_shapes(params: dict, spec: ViTSpec, source) -> None:
  """Every expected tensor present with its shape; nothing left over."""
  want = flax.traverse_util.flatten_dict(param_shapes(spec)["params"], sep="/")
  got = flax.traverse_util.flatten_dict(params, sep="/")
  missing = sorted(set(want) - set(got))
  extra = sorted(set(got) - set(want))
  if missing or extra:
    raise WeightsError(
        f"{source} does not fit {spec.name}: missing {missing[:4]}"
        f"{'…' if len(missing) > 4 else ''}, unexpected {extra[:4]}"
        f"{'…' if len(extra) > 4 else ''} (a MAP head, pre_logits or another "
        "architecture?)")
  for key, shape in want.items():
    if tuple(got[key].shape) != tuple(shape.shape):
      raise WeightsError(
          f"{source}: {key} has shape {tuple(got[key].shape)}, {spec.name} "
          f"needs {tuple(shape.shape)} (another size, patch or class count?)")


def convert_checkpoint(flat: Mapping[str, np.ndarray], spec: ViTSpec,
                       source: str = "checkpoint") -> dict:
  """A big_vision/AugReg checkpoint's flat arrays as ``{"params": ...}`` of ``ViT(spec)``.

  Applies big_vision's layout fixes (module docstring), renames modules, and
  resamples the position embedding to ``spec.grid``; a tensor of another shape
  raises :class:`WeightsError` naming it.
  """
  tree = flax.traverse_util.unflatten_dict(dict(flat), sep="/")
  params = _rename(_fix_old_layouts(_params_subtree(tree)))
  if "pos_embedding" in params:
    params["pos_embedding"] = resample_posemb(params["pos_embedding"], spec.grid)
  _check_shapes(params, spec, source)
  return {"params": jax.tree_util.tree_map(
      lambda x: jnp.asarray(x, jnp.float32), params)}


def load_variables(spec: ViTSpec, path: os.PathLike | str | None) -> dict:
  """``{"params": ...}`` of ``ViT(spec)`` from a big_vision ``.npz`` at ``path``.

  Weights are never downloaded; ``path`` is required.
  """
  if path is None:
    raise WeightsError(
        f"{spec.name} has no bundled weights; pass a big_vision/AugReg .npz "
        "checkpoint with weights=PATH (scripts: --weights=PATH).")
  return convert_checkpoint(read_npz(path), spec, source=str(path))


def to_big_vision(variables: Mapping) -> dict[str, np.ndarray]:
  """Our variables as the flat arrays of a big_vision ``.npz`` (current layout).

  The inverse of :func:`convert_checkpoint` for a current-layout file: what
  :func:`save_npz` writes, so trained weights load through the same path as
  published ones.
  """
  block_names = {v: k for k, v in _BLOCK_RENAMES.items()}
  mlp_names = {v: k for k, v in _MLP_RENAMES.items()}
  out = {}
  for key, value in flax.traverse_util.flatten_dict(
      dict(variables["params"]), sep="/").items():
    parts = key.split("/")
    if parts[0] == NORM:
      parts = [_TRANSFORMER, "encoder_norm"] + parts[1:]
    elif re.fullmatch(r"block\d+", parts[0]):
      inner = [block_names.get(parts[1], parts[1])]
      if parts[1] == "mlp":
        inner.append(mlp_names.get(parts[2], parts[2]))
        parts = parts[:2] + parts[3:]
      parts = [_TRANSFORMER, f"encoderblock_{parts[0][5:]}"] + inner + parts[2:]
    out["/".join(parts)] = np.asarray(value)
  return out


def save_npz(variables: Mapping, path: os.PathLike | str) -> pathlib.Path:
  """Writes ``variables`` as a big_vision-layout ``.npz``, atomically."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
  np.savez(tmp, **to_big_vision(variables))
  os.replace(tmp, path)
  return path
