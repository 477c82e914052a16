"""Vision Transformers (ViT) after big_vision, and their ``.npz`` checkpoints.

The architecture is big_vision's ``big_vision/models/vit.py`` (Dosovitskiy et
al. 2021; the AugReg checkpoints of Steiner et al. 2022; the SigLIP image
towers of Zhai et al. 2023 and Tschannen et al. 2025): a ``patch × patch``
stride-``patch`` convolution embeds the image as a grid of tokens, a position
embedding is added (learned, or big_vision's fixed 2-D sin-cos), optional
prefix tokens are put in front (a learned CLS token for a ``"tok"`` head;
*register* tokens, Darcet et al. 2024), then ``depth`` pre-norm encoder blocks

    x = x + attn(ln1(x));   x = x + fc2(gelu(fc1(ln2(x))))

and a final LayerNorm. The head pools the tokens (big_vision's ``pool_type``):
the CLS token (``"tok"``), the mean of the patch tokens (``"gap"``), a
multi-head attention pooling of them (``"map"``, big_vision's ``MAPHead``:
a learned probe attends to the tokens, then a residual LayerNorm + MLP — the
SigLIP towers), or nothing (``"none"``: every token goes on, PaliGemma's image
encoder). An optional ``rep_size`` pre-logits layer (``tanh(dense(x))``) and
a linear head follow. As in big_vision, GELU is the tanh approximation
(``flax.linen.gelu``), LayerNorm's epsilon is 1e-6, the CLS token is
concatenated *after* the position embedding is added, and the module takes
images in [-1, 1] (:data:`INPUT_MEAN`/:data:`INPUT_STD` map atlasjax's [0, 1]).

The module is a plain linen module returning the logits (or, for a tower
without a head, ``{"pre_logits": embedding}``); atlasjax sees it through
:func:`atlasjax.models.from_flax`, so every submodule's output is a named
output, by module path:

* ``embedding``: the patch grid ``[B, h, w, D]`` (stride ``patch``);
* ``blockK``: encoder block K's output tokens ``[B, P + h·w, D]``;
* ``blockK/ln1``, ``blockK/attn``: the attention branch (``attn/query`` etc.
  are the heads' ``[B, N, heads, head_dim]`` internals);
* ``blockK/mlp/fc1``: the MLP hidden layer before GELU ``[B, N, mlp_dim]``;
* ``blockK/mlp/fc2:input``: the same after GELU (the *input* of ``fc2``: GELU
  is a function, not a module), the layer Ghiasi et al. 2022 visualize;
* ``norm``; for a MAP head ``map_head/pooled`` (the probe's attention output,
  ``[B, D]``), ``map_head/ln``, ``map_head/mlp/fc1``, ``map_head/mlp/fc2:input``
  (its MLP hidden layer, ``[B, mlp_dim]``) and ``map_head`` (the pooled vector);
* big_vision's names for the head's values: ``head_input`` (the pooled
  vector), ``pre_logits`` (after the ``rep_size`` layer, else the same) and
  ``logits`` (the head's output; ``head`` is the same value).

Submodule names are ours (``blockK/mlp/fc1``), not big_vision's
(``Transformer/encoderblock_K/MlpBlock_0/Dense_0``), so layer names read
well; :func:`convert_checkpoint` maps one onto the other (:data:`_BLOCK_RENAMES`).

Checkpoints: big_vision, the AugReg release (``gs://vit_models/augreg/``) and
SigLIP / SigLIP 2 / PaliGemma store parameters as an ``.npz`` of arrays keyed
by ``/``-joined paths. :func:`read_tower` reads only the image tower of a
two-tower (``img/`` beside ``txt/``, ``t``, ``b``) or PaliGemma (``img/``
beside ``llm/``) file, checking each member's size against its header before
reading it and refusing NaN/inf. :func:`convert_checkpoint` applies the fixes
big_vision's ``vit.load`` applies (``fix_old_checkpoints``): pre-linen module
numbering (``LayerNorm_2`` → ``LayerNorm_1``, ``MlpBlock_3`` → ``MlpBlock_0``,
via flax's ``convert_pre_linen``), a position embedding stored inside
``Transformer`` (or in an even older ``posembed_input`` module), one that
includes the CLS token's entry (folded into the CLS token), an inlined MAP
head, stacked ``lax.scan`` blocks; and it resamples the position-embedding
grid to the model's input size (bilinear, as big_vision's ``resample_posemb``).
:func:`spec_from_file` infers the whole architecture from a file's shapes
(``models.load("big_vision", weights=FILE)``). Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import re
import zipfile
from typing import Mapping

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from atlasjax import readers
from atlasjax.models import base

# big_vision's ViTs take images in [-1, 1]: (x - 0.5) / 0.5.
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)
LAYERNORM_EPSILON = 1e-6  # flax's default, which big_vision's ViT uses.
HEAD = "head"
NORM = "norm"
MAP_HEAD = "map_head"
# big_vision's out-dict names for the head's values, kept as layer names.
HEAD_INPUT = "head_input"
PRE_LOGITS = "pre_logits"
LOGITS = "logits"
POOLS = ("tok", "gap", "map", "none")
POSEMBS = ("learn", "sincos2d")
PATCH_SIZES = (8, 16, 32)
SINCOS_TEMPERATURE = 10_000.0  # big_vision's posemb_sincos_2d

# Width, depth, MLP width, heads: big_vision's decode_variant
# (big_vision/models/vit.py; Table 2 of Zhai et al. 2022, "Scaling Vision
# Transformers", and the shape-optimised So400m of Alabdulmohsin et al. 2023).
VARIANTS = {
    "mu": (32, 1, 128, 2),
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "So400m": (1152, 27, 4304, 16),
    "H": (1280, 32, 5120, 16),
    "g": (1408, 40, 6144, 16),
    "g-opt": (1536, 40, 6144, 16),
    "G": (1664, 48, 8192, 16),
    "G-opt": (1536, 48, 8192, 16),
    "e": (1792, 56, 15360, 16),
}


class WeightsError(readers.FileFormatError):
  """A ViT checkpoint that is missing, unreadable, damaged or of another shape."""


@dataclasses.dataclass(frozen=True)
class ViTSpec:
  """A ViT's architecture as data (the fields of big_vision's ``vit._Model``).

  Attributes:
    name: registry name, e.g. ``"vit_b16"``.
    width: token dimension D.
    depth: number of encoder blocks.
    mlp_dim: hidden width of each block's MLP (and of the MAP head's).
    num_heads: attention heads (``width`` must be a multiple).
    patch: patch side in pixels (the stride of the token grid).
    image_size: the side the model runs at; the token grid is
      ``image_size // patch`` per side (big_vision's VALID convolution drops
      the remainder, e.g. So400m/14 at 384 px: 27×27).
    num_classes: outputs of the linear head; 0 for none (a SigLIP image
      tower, whose embedding is ``pre_logits``).
    pool: big_vision's ``pool_type``: ``"tok"`` (CLS token), ``"gap"``
      (mean of the patch tokens), ``"map"`` (attention pooling of the patch
      tokens), ``"none"`` (every token goes on to the head).
    registers: extra learned prefix tokens (Darcet et al. 2024), dropped by
      the pooling.
    posemb: ``"learn"`` (a learned ``[1, grid², D]`` parameter) or
      ``"sincos2d"`` (big_vision's fixed 2-D sin-cos).
    rep_size: width of the ``tanh`` pre-logits layer; 0 for none.
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
  posemb: str = "learn"
  rep_size: int = 0

  def __post_init__(self):
    if self.pool not in POOLS:
      raise ValueError(f"pool={self.pool!r}; use one of {POOLS}")
    if self.posemb not in POSEMBS:
      raise ValueError(f"posemb={self.posemb!r}; use one of {POSEMBS}")
    if self.width % self.num_heads:
      raise ValueError(f"width {self.width} is not a multiple of num_heads "
                       f"{self.num_heads}")
    if self.posemb == "sincos2d" and self.width % 4:
      raise ValueError(f"posemb='sincos2d' needs a width divisible by 4, got "
                       f"{self.width}")
    if not 0 < self.patch <= self.image_size:
      raise ValueError(f"patch {self.patch} does not fit image_size "
                       f"{self.image_size}")

  @property
  def grid(self) -> int:
    """Patches per side at ``image_size``."""
    return self.image_size // self.patch

  @property
  def prefix_tokens(self) -> int:
    """Tokens in front of the patch tokens: CLS (``"tok"``) and registers."""
    return (self.pool == "tok") + self.registers


def size_name(size: str) -> str:
  """big_vision's variant name for ``size``, exact or case-insensitive when
  unambiguous (``"so400m"`` → ``"So400m"``; ``"g"`` and ``"G"`` differ)."""
  if size in VARIANTS:
    return size
  matches = [v for v in VARIANTS if v.lower() == size.lower()]
  if len(matches) != 1:
    raise ValueError(f"No ViT size {size!r}; big_vision's sizes: "
                     f"{', '.join(VARIANTS)}")
  return matches[0]


def variant(size: str, patch: int | None = None, **kw) -> ViTSpec:
  """The ``ViT-{size}/{patch}`` of big_vision's ``decode_variant``.

  ``size`` is one of :data:`VARIANTS` (``"B"``, ``"So400m"``, ``"g-opt"``, …;
  lower case where unambiguous) or big_vision's ``"So400m/14"`` syntax;
  ``**kw`` sets any other :class:`ViTSpec` field (``pool="map"``, …).
  """
  if "/" in size:
    size, patch_text = size.split("/", 1)
    if not patch_text.isdigit():
      raise ValueError(f"Variant {size}/{patch_text}: the patch must be a number")
    patch = int(patch_text)
  size = size_name(size)
  if patch is None:
    raise ValueError(f"ViT-{size} needs a patch size: variant('{size}/16')")
  width, depth, mlp_dim, heads = VARIANTS[size]
  name = kw.pop("name", f"vit_{size.lower().replace('-', '')}{patch}")
  return ViTSpec(name=name, width=width, depth=depth, mlp_dim=mlp_dim,
                 num_heads=heads, patch=patch, **kw)


def variant_label(spec: ViTSpec) -> str | None:
  """big_vision's ``"So400m/14"`` name of ``spec``'s size, if it is a standard one."""
  dims = (spec.width, spec.depth, spec.mlp_dim, spec.num_heads)
  for size, values in VARIANTS.items():
    if values == dims:
      return f"{size}/{spec.patch}"
  return None


# The published-size zoo: ImageNet-1k heads at 224 px with a CLS token, the
# layout of AugReg's ``...--imagenet2012-...-res_224.npz`` files.
SPECS = {spec.name: spec for spec in (variant(s, p) for s in ("ti", "s", "b", "l")
                                      for p in PATCH_SIZES)}


def _siglip(name: str, size: str, image_size: int) -> ViTSpec:
  # SigLIP's image tower: MAP pooling and no head (two_towers' out_dim is
  # (None, width) in big_vision's SigLIP demos): the embedding is pre_logits.
  return variant(size, name=name, image_size=image_size, pool="map", num_classes=0)


def _paligemma(name: str, image_size: int) -> ViTSpec:
  # PaliGemma (1)'s image encoder: So400m/14, no pooling, a head projecting
  # every token to Gemma-2B's width (2048).
  return variant("So400m/14", name=name, image_size=image_size, pool="none",
                 num_classes=2048)


# The public SigLIP (webli_en_*) and SigLIP 2 (siglip2_*) image towers, by
# big_vision's VANITY_NAMES, and PaliGemma's encoder; docs/methods/vit_zoo.md
# lists the files.
TOWER_SPECS = {spec.name: spec for spec in (
    _siglip("siglip_b16", "B/16", 224), _siglip("siglip_b16_256", "B/16", 256),
    _siglip("siglip_b16_384", "B/16", 384), _siglip("siglip_b16_512", "B/16", 512),
    _siglip("siglip_b32_256", "B/32", 256),
    _siglip("siglip_l16_256", "L/16", 256), _siglip("siglip_l16_384", "L/16", 384),
    _siglip("siglip_l16_512", "L/16", 512),
    _siglip("siglip_so400m14", "So400m/14", 224),
    _siglip("siglip_so400m14_384", "So400m/14", 384),
    _siglip("siglip_so400m16_256", "So400m/16", 256),
    _siglip("siglip_so400m16_384", "So400m/16", 384),
    _siglip("siglip_so400m16_512", "So400m/16", 512),
    _siglip("siglip_gopt16_256", "g-opt/16", 256),
    _siglip("siglip_gopt16_384", "g-opt/16", 384),
    _paligemma("paligemma_224", 224), _paligemma("paligemma_448", 448),
)}


# A ViT small enough to train on a CPU in half an hour (bench/distill_vit.py
# distils GoogLeNet into it): ViT-Ti's width and heads, 6 blocks, 16 px
# patches at 112 px (a 7×7 token grid), CLS head.
DISTILLED = ViTSpec(name="vit_distilled", width=192, depth=6, mlp_dim=768,
                    num_heads=3, patch=16, image_size=112)
DISTILLED_FILE = "vit_distilled.npz"


def named_spec(name: str) -> ViTSpec:
  """The registered spec called ``name`` (zoo, towers, distilled)."""
  if name == DISTILLED.name:
    return DISTILLED
  return {**SPECS, **TOWER_SPECS}[name]


def distilled_dir() -> pathlib.Path:
  """Where bench/distill_vit.py works and writes :data:`DISTILLED_FILE`."""
  from atlasjax import data as data_lib  # data imports pooch; only here
  return data_lib.cache_dir() / DISTILLED.name


# ----------------------------------------------------------------------------
# The Flax modules.

def posemb_sincos_2d(h: int, w: int, width: int, dtype=jnp.float32):
  """big_vision's fixed 2-D position embedding ``[1, h·w, width]`` (MoCo v3)."""
  y, x = jnp.mgrid[:h, :w]
  omega = jnp.arange(width // 4) / (width // 4 - 1)
  omega = 1.0 / (SINCOS_TEMPERATURE ** omega)
  y = jnp.einsum("m,d->md", y.flatten(), omega)
  x = jnp.einsum("m,d->md", x.flatten(), omega)
  pe = jnp.concatenate([jnp.sin(x), jnp.cos(x), jnp.sin(y), jnp.cos(y)], axis=1)
  return jnp.asarray(pe, dtype)[None, :, :]


class Named(nn.Module):
  """The identity, so that a value computed between modules is a named output.

  The value is passed by keyword: the adapter names a module's first
  *positional* argument ``<path>:input``, and this one should appear once,
  under the module's own name (``head_input``, ``pre_logits``, ``logits``).
  """

  @nn.compact
  def __call__(self, *, value):
    return value


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


class MAPHead(nn.Module):
  """Multi-head attention pooling (big_vision's ``MAPHead``; Lee et al. 2019).

  A learned probe token attends to the tokens; its output (``pooled``) goes
  through a residual LayerNorm + MLP. The LayerNorm and MLP act per token, so
  they run on the probe's ``[B, D]`` vector directly, which makes every value
  inside the head a ``[B, ·]`` layer one can render.
  """
  mlp_dim: int
  num_heads: int

  @nn.compact
  def __call__(self, x):
    n, _, d = x.shape
    probe = self.param("probe", nn.initializers.xavier_uniform(), (1, 1, d), x.dtype)
    attended = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, deterministic=True, name="attn")(
            jnp.tile(probe, [n, 1, 1]), x)
    pooled = Named(name="pooled")(value=attended[:, 0])
    y = nn.LayerNorm(epsilon=LAYERNORM_EPSILON, name="ln")(pooled)
    return pooled + MlpBlock(self.mlp_dim, name="mlp")(y)


class PreLogits(nn.Module):
  """big_vision's ``rep_size`` layer, ``tanh(x @ kernel + bias)``.

  Written with its own parameters (not an ``nn.Dense`` inside) so the module
  path ``pre_logits`` names the value after the tanh, as big_vision's
  ``out["pre_logits"]`` does, and the parameters keep big_vision's paths
  ``pre_logits/{kernel,bias}``.
  """
  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (x.shape[-1], self.features), x.dtype)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), x.dtype)
    return jnp.tanh(x @ kernel + bias)


class ViT(nn.Module):
  """A ViT built from ``spec``: images in [-1, 1] ``[B, H, W, 3]`` → logits.

  ``H // patch`` and ``W // patch`` must equal ``spec.grid`` for a learned
  position embedding (it has one entry per patch of that grid). Without a
  head (``num_classes=0``) it returns ``{"pre_logits": embedding}``.
  """
  spec: ViTSpec

  @nn.compact
  def __call__(self, images):
    spec = self.spec
    x = nn.Conv(spec.width, (spec.patch, spec.patch),
                strides=(spec.patch, spec.patch), padding="VALID",
                name="embedding")(images)
    n, h, w, d = x.shape
    x = x.reshape(n, h * w, d) + self._posemb(h, w, d)
    x = jnp.concatenate([jnp.broadcast_to(t, (n,) + t.shape[1:])
                         for t in self._prefix(d)] + [x], axis=1)
    for i in range(spec.depth):
      x = EncoderBlock(spec.mlp_dim, spec.num_heads, name=f"block{i}")(x)
    x = nn.LayerNorm(epsilon=LAYERNORM_EPSILON, name=NORM)(x)
    return self._head(x)

  def _posemb(self, h, w, width):
    spec = self.spec
    if spec.posemb == "sincos2d":
      return posemb_sincos_2d(h, w, width)
    posemb = self.param("pos_embedding", nn.initializers.normal(1 / math.sqrt(width)),
                        (1, spec.grid * spec.grid, width))
    if h * w != posemb.shape[1]:
      raise ValueError(
          f"{spec.name} takes {spec.image_size} px images ({spec.grid}×"
          f"{spec.grid} patches of {spec.patch} px), got a {h}×{w} grid")
    return posemb

  def _prefix(self, width):
    """The learned prefix tokens, each ``[1, k, D]``: CLS, then registers."""
    tokens = []
    if self.spec.pool == "tok":
      tokens.append(self.param("cls", nn.initializers.zeros, (1, 1, width)))
    if self.spec.registers:
      tokens.append(self.param("registers", nn.initializers.normal(0.02),
                               (1, self.spec.registers, width)))
    return tokens

  def _head(self, x):
    """Pooling, pre-logits and the linear head, under big_vision's names."""
    spec = self.spec
    patches = x[:, spec.prefix_tokens:]
    if spec.pool != "none":
      pooled = {"tok": lambda: x[:, 0], "gap": lambda: patches.mean(1),
                "map": lambda: MAPHead(spec.mlp_dim, spec.num_heads,
                                       name=MAP_HEAD)(patches)}[spec.pool]()
      x = Named(name=HEAD_INPUT)(value=pooled)
    if spec.rep_size:
      x = PreLogits(spec.rep_size, name=PRE_LOGITS)(x)
    else:
      x = Named(name=PRE_LOGITS)(value=x)
    if not spec.num_classes:
      return {PRE_LOGITS: x}
    logits = nn.Dense(spec.num_classes, kernel_init=nn.initializers.zeros,
                      name=HEAD)(x)
    return Named(name=LOGITS)(value=logits)


def init(key: jax.Array, spec: ViTSpec) -> dict:
  """Random variables ``{"params": ...}`` of ``spec``, for tests and training."""
  size = spec.image_size
  # One compiled program: op-by-op initialisation is many times slower.
  return jax.jit(ViT(spec).init)(key, jnp.zeros((1, size, size, 3), jnp.float32))


def param_shapes(spec: ViTSpec) -> dict:
  """``{"params": ...}`` of ``jax.ShapeDtypeStruct`` (no memory), for checks."""
  return jax.eval_shape(lambda: init(jax.random.PRNGKey(0), spec))


def param_count(spec: ViTSpec) -> int:
  """Number of parameters of ``ViT(spec)`` (by abstract evaluation)."""
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(param_shapes(spec)))


def build(spec: ViTSpec) -> base.Model:
  """The library :class:`~atlasjax.models.base.Model` of ``ViT(spec)``.

  Layers, strides and the token grid are inferred by
  :func:`~atlasjax.models.from_flax` (no layer table): each ``[B, P + h·w, D]``
  token output becomes a ``[B, h, w, D]`` layer with the prefix tokens
  dropped, and any input size is resized to ``image_size``. The default layer,
  inferred by the adapter's rule for any transformer, is the middle block's
  MLP hidden layer after GELU, ``block{depth//2}/mlp/fc2:input``; CAM applies
  only to a GAP head straight into the classifier (other heads do not
  average the token grid linearly).
  """
  from atlasjax.models import flax_adapter  # imports models' users
  linear_gap = spec.pool == "gap" and not spec.rep_size and spec.num_classes
  return flax_adapter.from_flax(
      ViT(spec), None, name=spec.name, input_size=spec.image_size,
      # The position embedding fixes the grid (a sin-cos one is computed for
      # the grid, but the token layers' grid is fixed): the adapter resizes
      # every other input size to image_size.
      fixed_input_size=True,
      input_convention=flax_adapter.Normalize(mean=INPUT_MEAN, std=INPUT_STD),
      cam_layer=NORM if linear_gap else None,
      classifier=("params", HEAD) if spec.num_classes and spec.pool != "none" else None,
      metadata_params=param_shapes(spec))[0]


# ----------------------------------------------------------------------------
# Reading ``.npz`` files: each member's size checked against its header first.
# The checks are atlasjax.readers' (sizes, dtypes, finiteness; the same
# exceptions count as a damaged file), kept here because the loader reads
# headers alone first and then only the image tower's members.

_NPY_MAGIC = b"\x93NUMPY"
_NPY_SUFFIX = ".npy"


@dataclasses.dataclass(frozen=True)
class Member:
  """One array of an ``.npz``, as its header declares it (nothing read yet)."""
  info: zipfile.ZipInfo
  shape: tuple[int, ...]
  dtype: np.dtype


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path) -> Member:
  """The member's shape and dtype, its stored size checked against them."""
  key = info.filename[:-len(_NPY_SUFFIX)]
  with zf.open(info) as f:
    version = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read(f)
    offset = f.tell()
  if dtype.hasobject:
    raise WeightsError(f"{path}: {key} holds Python objects, not numbers; a "
                       "checkpoint holds numeric arrays only.")
  expected = offset + math.prod(shape) * dtype.itemsize
  if info.file_size != expected:
    raise WeightsError(
        f"{path}: {key} declares shape {shape} of {dtype} ({expected} bytes) but "
        f"holds {info.file_size}: the file is damaged; download it again.")
  return Member(info, tuple(shape), dtype)


def _open_npz(path: os.PathLike | str) -> tuple[pathlib.Path, zipfile.ZipFile]:
  """The ``.npz`` as an open zip, or one line saying why it is not one."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise WeightsError(f"ViT weights {path} not found; pass the path of a "
                       "big_vision/AugReg/SigLIP .npz checkpoint (weights=PATH, "
                       "--weights=PATH).")
  with open(path, "rb") as f:
    if f.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
      raise WeightsError(
          f"{path} is a single .npy array, not an .npz checkpoint (arrays keyed "
          "by parameter path, as np.savez writes); pass the .npz file.")
  try:
    return path, zipfile.ZipFile(path)
  except readers.DAMAGED as e:
    raise WeightsError(f"Cannot read {path} as an .npz checkpoint ({e}): a "
                       "truncated or damaged file? Download it again.") from None


def npz_members(path: os.PathLike | str) -> dict[str, Member]:
  """``{key: Member}`` of an ``.npz`` from its headers alone (no array read)."""
  path, zf = _open_npz(path)
  with zf:
    try:
      members = {}
      for info in zf.infolist():
        if not info.filename.endswith(_NPY_SUFFIX):
          raise WeightsError(f"{path}: member {info.filename!r} is not an array "
                             "(.npy); this is a zip but not an .npz checkpoint.")
        members[info.filename[:-len(_NPY_SUFFIX)]] = _header(zf, info, path)
    except readers.DAMAGED + (ValueError,) as e:
      if isinstance(e, WeightsError):
        raise
      raise WeightsError(f"Cannot read {path} as an .npz checkpoint ({e}): a "
                         "truncated or damaged file? Download it again.") from None
  return members


def _recover_dtype(value: np.ndarray) -> np.ndarray:
  """np.save writes bfloat16 as a 2-byte void type (big_vision's recover_dtype)."""
  if value.dtype.type is np.void and value.itemsize == 2:
    return value.view(jnp.bfloat16)
  return value


def _read_member(zf, key: str, member: Member, path) -> np.ndarray:
  """One array, refused if it holds NaN or infinity."""
  with zf.open(member.info) as f:
    value = _recover_dtype(np.lib.format.read_array(f, allow_pickle=False))
  if value.dtype.kind in "fcV" or value.dtype == jnp.bfloat16:
    if not np.isfinite(value.astype(np.float32)).all():
      raise WeightsError(f"{path}: {key} holds NaN or infinite values; the "
                         "checkpoint is damaged (or its training diverged).")
  return value


def read_npz(path: os.PathLike | str,
             keys: set[str] | None = None) -> dict[str, np.ndarray]:
  """The flat ``{"a/b/c": array}`` of an ``.npz`` (only ``keys`` if given).

  Every member's size is checked against its header before anything is read;
  bfloat16 is recovered; NaN/inf, a truncated zip, an ``.npy`` in place of an
  ``.npz`` raise :class:`WeightsError` (one line).
  """
  members = npz_members(path)
  path, zf = _open_npz(path)
  with zf:
    try:
      return {k: _read_member(zf, k, m, path) for k, m in members.items()
              if keys is None or k in keys}
    except readers.DAMAGED + (ValueError,) as e:
      if isinstance(e, WeightsError):
        raise
      raise WeightsError(f"Cannot read {path} as an .npz checkpoint ({e}): a "
                         "truncated or damaged file? Download it again.") from None


# ----------------------------------------------------------------------------
# Checkpoints: big_vision / AugReg / SigLIP / PaliGemma layouts.

# Inside an encoder block, big_vision's module names (after the pre-linen
# renumbering) → ours. The block itself is ``Transformer/encoderblock_K`` →
# ``blockK``; the root's ``Transformer/encoder_norm`` → ``norm``.
_BLOCK_RENAMES = {
    "LayerNorm_0": "ln1",
    "MultiHeadDotProductAttention_0": "attn",
    "LayerNorm_1": "ln2",
    "MlpBlock_0": "mlp",
}
# Inside big_vision's ``MAPHead_0`` → ours (``map_head``).
_MAP_RENAMES = {
    "MultiHeadDotProductAttention_0": "attn",
    "LayerNorm_0": "ln",
    "MlpBlock_0": "mlp",
}
_BV_MAP_HEAD = "MAPHead_0"
_MLP_RENAMES = {"Dense_0": "fc1", "Dense_1": "fc2"}
_TRANSFORMER = "Transformer"
_BLOCK_PATTERN = re.compile(r"encoderblock_(\d+)$")
_SCAN_BLOCK = "encoderblock"
# Prefixes of the parameters in a checkpoint saved with optimizer state.
_PARAM_PREFIXES = ("params/", "opt/target/")
# The image tower of a two-tower (SigLIP) or PaliGemma checkpoint.
_TOWER = "img/"
_TOWER_KINDS = {"txt": "SigLIP two-tower checkpoint (txt/, t, b left out)",
                "llm": "PaliGemma checkpoint (llm/ left out)"}


def select_tower(keys) -> tuple[dict[str, str], str]:
  """``({checkpoint key: tower key}, description)`` of the image ViT's arrays.

  Strips ``params/`` (optax state beside it is left out) or ``opt/target/``,
  then takes ``img/`` from a two-tower or PaliGemma checkpoint. Works on key
  names alone, so only the tower's arrays need to be read.
  """
  names = {k: k for k in keys}
  for prefix in _PARAM_PREFIXES:
    if any(k.startswith(prefix) for k in names):
      names = {k: v[len(prefix):] for k, v in names.items() if v.startswith(prefix)}
      break
  tops = {v.split("/", 1)[0] for v in names.values()}
  if _TOWER[:-1] not in tops:
    return names, "ViT checkpoint"
  kind = next((d for top, d in _TOWER_KINDS.items() if top in tops),
              "checkpoint with an img/ tower")
  return ({k: v[len(_TOWER):] for k, v in names.items() if v.startswith(_TOWER)},
          "image tower of a " + kind)


def read_tower(path: os.PathLike | str) -> tuple[dict[str, np.ndarray], str]:
  """The image ViT's flat arrays in the file at ``path`` (only those read),
  keyed as a plain ViT checkpoint, and where they came from."""
  names, kind = select_tower(npz_members(path))
  flat = read_npz(path, keys=set(names))
  return {names[k]: v for k, v in flat.items()}, kind


def _check_posemb(pe, source) -> None:
  if len(pe.shape) != 3 or pe.shape[0] != 1:
    raise WeightsError(
        f"{source}: pos_embedding has shape {tuple(pe.shape)}; big_vision stores "
        "[1, tokens, width]. The file is not a big_vision ViT checkpoint.")


def _fix_old_layouts(params: dict, source="checkpoint") -> dict:
  """big_vision's ``fix_old_checkpoints`` and ``scan_to_pyloop``."""
  from flax.training import checkpoints as flax_checkpoints  # heavy; only here
  params = flax_checkpoints.convert_pre_linen(params)  # LayerNorm_2 → LayerNorm_1
  params = jax.tree_util.tree_map(lambda x: x, params)  # a copy we may edit
  transformer = params.get(_TRANSFORMER, {})
  if "posembed_input" in transformer:  # the original ViT release
    params["pos_embedding"] = transformer.pop("posembed_input")["pos_embedding"]
  if "pos_embedding" in transformer:  # before 2022: inside the encoder
    params["pos_embedding"] = transformer.pop("pos_embedding")
  pe = params.get("pos_embedding")
  if pe is not None:
    _check_posemb(pe, source)
    if pe.shape[1] > 1 and math.isqrt(pe.shape[1] - 1) ** 2 + 1 == pe.shape[1]:
      # The CLS token used to be concatenated before the position embedding
      # was added: its entry is folded into the CLS token, as big_vision does.
      params["pos_embedding"] = pe[:, 1:]
      if "cls" in params:
        params["cls"] = params["cls"] + pe[:, :1]
  if "probe" in params:  # MAP heads inlined during ViT-G's development
    params[_BV_MAP_HEAD] = {k: params.pop(k) for k in
                            ["probe", "MlpBlock_0", "MultiHeadDotProductAttention_0",
                             "LayerNorm_0"] if k in params}
  if _SCAN_BLOCK in transformer:  # lax.scan checkpoints stack the blocks
    stacked = transformer.pop(_SCAN_BLOCK)
    depth = len(jax.tree_util.tree_leaves(stacked)[0])
    for i in range(depth):
      transformer[f"encoderblock_{i}"] = jax.tree_util.tree_map(
          lambda x, i=i: x[i], stacked)
  return params


def _rename_module(sub: dict, renames: Mapping[str, str]) -> dict:
  """A block or MAP head: its modules renamed, its MLP's dense layers too."""
  out = {renames.get(k, k): v for k, v in sub.items()}
  if "mlp" in out:
    out["mlp"] = {_MLP_RENAMES.get(k, k): v for k, v in out["mlp"].items()}
  return out


def _rename(params: dict) -> dict:
  """big_vision's module names → ours (see :data:`_BLOCK_RENAMES`)."""
  out = {k: v for k, v in params.items() if k not in (_TRANSFORMER, _BV_MAP_HEAD)}
  if _BV_MAP_HEAD in params:
    out[MAP_HEAD] = _rename_module(params[_BV_MAP_HEAD], _MAP_RENAMES)
  for name, sub in params.get(_TRANSFORMER, {}).items():
    match = _BLOCK_PATTERN.match(name)
    if name == "encoder_norm":
      out[NORM] = sub
    elif match:
      out[f"block{match.group(1)}"] = _rename_module(sub, _BLOCK_RENAMES)
    else:
      out[f"{_TRANSFORMER}/{name}"] = sub  # unknown: reported by the shape check
  return out


def resample_posemb(posemb: np.ndarray, grid: int) -> np.ndarray:
  """``[1, g·g, D]`` → ``[1, grid·grid, D]`` by bilinear zoom (big_vision's)."""
  import scipy.ndimage  # pylint: disable=import-outside-toplevel  (only when resampling)
  old = math.isqrt(posemb.shape[1])
  if old == grid:
    return posemb
  zoomed = scipy.ndimage.zoom(posemb.reshape(old, old, -1).astype(np.float32),
                              (grid / old, grid / old, 1), order=1)
  return zoomed.reshape(1, grid * grid, -1).astype(posemb.dtype)


def _fit_posemb(params: dict, spec: ViTSpec, source, resample: bool) -> dict:
  """The position embedding on ``spec``'s grid, or one line saying why not."""
  pe = params.get("pos_embedding")
  if pe is None or spec.posemb != "learn" or pe.shape[1] == spec.grid ** 2:
    return params
  old = math.isqrt(pe.shape[1])
  if old * old != pe.shape[1]:
    raise WeightsError(
        f"{source}: pos_embedding has {pe.shape[1]} entries, not a square grid "
        f"(nor one plus a square); {spec.name} needs {spec.grid}×{spec.grid}. "
        "The file is not a ViT of a square patch grid.")
  if not resample:
    raise WeightsError(
        f"{source}: pos_embedding is a {old}×{old} grid ({old * spec.patch} px), "
        f"{spec.name} needs {spec.grid}×{spec.grid} ({spec.image_size} px); pass "
        "resample=True to resample it bilinearly, or a model of that size.")
  from atlasjax import progress  # pylint: disable=import-outside-toplevel
  progress.note(f"{source}: position embedding resampled from {old}×{old} to "
                f"{spec.grid}×{spec.grid} ({spec.image_size} px), bilinearly")
  return {**params, "pos_embedding": resample_posemb(pe, spec.grid)}


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
        f"{'…' if len(extra) > 4 else ''} (another pooling, pre_logits, head "
        "or architecture? models.load('big_vision', weights=FILE) infers it)")
  for key, shape in want.items():
    if tuple(got[key].shape) != tuple(shape.shape):
      raise WeightsError(
          f"{source}: {key} has shape {tuple(got[key].shape)}, {spec.name} "
          f"needs {tuple(shape.shape)} (another size, patch or class count?)")


def _our_tree(flat: Mapping[str, np.ndarray], source) -> dict:
  """A checkpoint's flat arrays as our module tree (layouts fixed, renamed)."""
  names, _ = select_tower(flat)
  tree = flax.traverse_util.unflatten_dict({v: flat[k] for k, v in names.items()},
                                           sep="/")
  return _rename(_fix_old_layouts(tree, source))


def convert_checkpoint(flat: Mapping[str, np.ndarray], spec: ViTSpec,
                       source: str = "checkpoint", resample: bool = True) -> dict:
  """A big_vision checkpoint's flat arrays as ``{"params": ...}`` of ``ViT(spec)``.

  Takes the image tower of a two-tower/PaliGemma file, applies big_vision's
  layout fixes (module docstring), renames modules, and resamples the
  position embedding to ``spec.grid`` (``resample=False`` refuses another
  grid instead); a tensor of another shape raises :class:`WeightsError`
  naming it.
  """
  params = _fit_posemb(_our_tree(flat, source), spec, source, resample)
  _check_shapes(params, spec, source)
  return {"params": jax.tree_util.tree_map(
      lambda x: jnp.asarray(x, jnp.float32), params)}


def load_variables(spec: ViTSpec, path: os.PathLike | str | None,
                   resample: bool = True) -> dict:
  """``{"params": ...}`` of ``ViT(spec)`` from a big_vision ``.npz`` at ``path``.

  Weights are never downloaded; ``path`` is required. Only the image tower
  of a two-tower or PaliGemma file is read.
  """
  if path is None:
    raise WeightsError(
        f"{spec.name} has no bundled weights; pass a big_vision/AugReg/SigLIP "
        ".npz checkpoint with weights=PATH (scripts: --weights=PATH).")
  flat, _ = read_tower(path)
  return convert_checkpoint(flat, spec, source=str(path), resample=resample)


# ----------------------------------------------------------------------------
# The architecture of a file, from its shapes.

# Published resolutions whose side is not grid × patch (the VALID patch
# convolution drops the rest): So400m/14 at 384 px has a 27×27 grid.
_PUBLISHED_SIZES = {(14, 27): 384}
DEFAULT_SINCOS_SIZE = 224  # a sin-cos ViT's file has no grid: big_vision's default
INFERRED_NAME = "big_vision"


def _stand_ins(members: Mapping[str, Member]) -> dict[str, np.ndarray]:
  """Zero-memory arrays of the members' shapes (broadcast views of one zero)."""
  return {k: np.broadcast_to(np.zeros((), np.float32), m.shape)
          for k, m in members.items()}


def _shape(flat: Mapping, key: str, source) -> tuple[int, ...]:
  if key not in flat:
    raise WeightsError(f"{source} has no {key}: not a big_vision ViT checkpoint "
                       f"(it holds {sorted(flat)[:4]}…).")
  return tuple(flat[key].shape)


def infer_spec(members: Mapping[str, Member], source="checkpoint",
               name: str = INFERRED_NAME) -> ViTSpec:
  """The :class:`ViTSpec` a checkpoint's shapes describe.

  Width and patch from the patch embedding's kernel, depth from the blocks,
  heads from the attention's query kernel ``[D, heads, head_dim]``, MLP
  width from ``fc1``, pooling from a MAP head / CLS token (else GAP; no
  pooling in a PaliGemma file), registers, learned or sin-cos position
  embedding (its grid gives the input size), ``rep_size`` and classes.
  """
  names, kind = select_tower(members)
  flat = flax.traverse_util.flatten_dict(_our_tree(
      _stand_ins({k: members[k] for k in names}), source), sep="/")
  kh, kw, _, width = _shape(flat, "embedding/kernel", source)
  if kh != kw:
    raise WeightsError(f"{source}: non-square {kh}×{kw} patches are not supported.")
  heads = _shape(flat, "block0/attn/query/kernel", source)[1]
  mlp_dim = _shape(flat, "block0/mlp/fc1/kernel", source)[1]
  depth = len({k.split("/", 1)[0] for k in flat if re.match(r"block\d+/", k)})
  pool = ("map" if any(k.startswith(MAP_HEAD + "/") for k in flat) else
          "tok" if "cls" in flat else "none" if "PaliGemma" in kind else "gap")
  if "pos_embedding" in flat:
    tokens = flat["pos_embedding"].shape[1]
    grid = math.isqrt(tokens)
    if grid * grid != tokens:
      raise WeightsError(f"{source}: pos_embedding has {tokens} entries, not a "
                         "square grid; not a ViT of a square patch grid.")
    image_size = _PUBLISHED_SIZES.get((kh, grid), grid * kh)
  else:
    image_size = DEFAULT_SINCOS_SIZE
  return ViTSpec(
      name=name, width=width, depth=depth, mlp_dim=mlp_dim, num_heads=heads,
      patch=kh, image_size=image_size,
      num_classes=flat["head/kernel"].shape[-1] if "head/kernel" in flat else 0,
      pool=pool, registers=flat["registers"].shape[1] if "registers" in flat else 0,
      posemb="learn" if "pos_embedding" in flat else "sincos2d",
      rep_size=flat["pre_logits/kernel"].shape[-1] if "pre_logits/kernel" in flat else 0)


def describe(spec: ViTSpec, kind: str = "ViT checkpoint") -> str:
  """One line: what a checkpoint holds, in big_vision's terms."""
  label = variant_label(spec) or "a non-standard size"
  posemb = (f"learned {spec.grid}×{spec.grid} position embedding"
            if spec.posemb == "learn" else "sin-cos position embedding")
  head = (f"head of {spec.num_classes}" if spec.num_classes
          else f"no head (embedding: pre_logits, {spec.rep_size or spec.width})")
  return (f"{kind}: ViT {label} (width {spec.width}, depth {spec.depth}, "
          f"{spec.num_heads} heads, MLP {spec.mlp_dim}, patch {spec.patch}), "
          f"pool {spec.pool}, {posemb} → {spec.image_size} px, "
          f"{spec.registers} registers, "
          f"{'rep_size ' + str(spec.rep_size) if spec.rep_size else 'no pre-logits layer'}, "
          f"{head}")


def spec_from_file(path: os.PathLike | str, name: str = INFERRED_NAME
                   ) -> tuple[ViTSpec, str]:
  """``(spec, one-line description)`` of the ViT in the ``.npz`` at ``path``,
  from its headers alone (no array is read)."""
  if path is None:
    raise WeightsError(
        f"{name} reads its architecture from its weights file; pass a big_vision "
        ".npz checkpoint with weights=PATH (scripts: --weights=PATH).")
  members = npz_members(path)
  spec = infer_spec(members, str(path), name)
  return spec, f"{path}: " + describe(spec, select_tower(members)[1])


# ----------------------------------------------------------------------------
# Writing: the current big_vision layout.

def to_big_vision(variables: Mapping) -> dict[str, np.ndarray]:
  """Our variables as the flat arrays of a big_vision ``.npz`` (current layout).

  The inverse of :func:`convert_checkpoint` for a current-layout file: what
  :func:`save_npz` writes, so trained weights load through the same path as
  published ones.
  """
  block_names = {v: k for k, v in _BLOCK_RENAMES.items()}
  map_names = {v: k for k, v in _MAP_RENAMES.items()}
  mlp_names = {v: k for k, v in _MLP_RENAMES.items()}

  def inner(parts, names):
    renamed = [names.get(parts[0], parts[0])]
    if parts[0] == "mlp":
      return renamed + [mlp_names.get(parts[1], parts[1])] + parts[2:]
    return renamed + parts[1:]

  out = {}
  for key, value in flax.traverse_util.flatten_dict(
      dict(variables["params"]), sep="/").items():
    parts = key.split("/")
    if parts[0] == NORM:
      parts = [_TRANSFORMER, "encoder_norm"] + parts[1:]
    elif parts[0] == MAP_HEAD:
      parts = [_BV_MAP_HEAD] + inner(parts[1:], map_names)
    elif re.fullmatch(r"block\d+", parts[0]):
      parts = [_TRANSFORMER, f"encoderblock_{parts[0][5:]}"] + inner(
          parts[1:], block_names)
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
