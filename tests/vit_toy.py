"""Two tiny Vision Transformers the adapter has never seen: one linen, one NNX.

Written the way a user writes a ViT (patch embedding convolution, a CLS token,
learned position embeddings, pre-norm blocks with multi-head attention and a
GELU MLP whose nonlinearity is a *function* between two dense layers, a linear
head on the CLS token) and independently of atlasjax's model zoo, so the tests
exercise ``models.from_flax`` exactly as a new user would. Random weights.

At ``SIZE`` px with ``PATCH`` px patches the patch grid is ``GRID × GRID`` and
a block's output is ``[B, 1 + GRID², WIDTH]``. The learned position embeddings
make both models accept only ``SIZE`` px inputs (a fixed input size).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

SIZE = 32
PATCH = 8
GRID = SIZE // PATCH
TOKENS = 1 + GRID * GRID
WIDTH = 16
HEADS = 2
MLP = 32
DEPTH = 3
CLASSES = 10
INIT_STD = 0.02


class LinenBlock(nn.Module):
  """Pre-norm encoder block: ``x + attn(ln(x))`` then ``x + fc2(gelu(fc1(ln(x))))``."""

  @nn.compact
  def __call__(self, x):
    y = nn.LayerNorm(name="ln1")(x)
    x = x + nn.MultiHeadDotProductAttention(HEADS, name="attn")(y, y)
    y = nn.LayerNorm(name="ln2")(x)
    y = nn.gelu(nn.Dense(MLP, name="fc1")(y))
    return x + nn.Dense(WIDTH, name="fc2")(y)


class LinenViT(nn.Module):
  """ViT with a CLS token and learned position embeddings (fixed input size)."""

  @nn.compact
  def __call__(self, images):
    x = nn.Conv(WIDTH, (PATCH, PATCH), strides=PATCH, padding="VALID",
                name="patch_embed")(images)
    b, h, w, d = x.shape
    x = x.reshape(b, h * w, d)
    cls = self.param("cls", nn.initializers.normal(INIT_STD), (1, 1, d))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), x], axis=1)
    x = x + self.param("pos_embed", nn.initializers.normal(INIT_STD), (1, TOKENS, d))
    for i in range(DEPTH):
      x = LinenBlock(name=f"block{i}")(x)
    x = nn.LayerNorm(name="norm")(x)
    return nn.Dense(CLASSES, name="head")(x[:, 0])


class NNXMlp(nnx.Module):

  def __init__(self, rngs):
    self.fc1 = nnx.Linear(WIDTH, MLP, rngs=rngs)
    self.fc2 = nnx.Linear(MLP, WIDTH, rngs=rngs)

  def __call__(self, x):
    return self.fc2(jax.nn.gelu(self.fc1(x)))


class NNXBlock(nnx.Module):

  def __init__(self, rngs):
    self.norm1 = nnx.LayerNorm(WIDTH, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(HEADS, WIDTH, decode=False, rngs=rngs)
    self.norm2 = nnx.LayerNorm(WIDTH, rngs=rngs)
    self.mlp = NNXMlp(rngs)

  def __call__(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class NNXViT(nnx.Module):
  """The same architecture in NNX, blocks in a list (paths ``blocks/0/...``)."""

  def __init__(self, rngs: nnx.Rngs):
    self.patch_embed = nnx.Conv(3, WIDTH, (PATCH, PATCH), strides=PATCH,
                                padding="VALID", rngs=rngs)
    self.cls = nnx.Param(INIT_STD * jax.random.normal(rngs.params(), (1, 1, WIDTH)))
    self.pos_embed = nnx.Param(
        INIT_STD * jax.random.normal(rngs.params(), (1, TOKENS, WIDTH)))
    self.blocks = nnx.List([NNXBlock(rngs) for _ in range(DEPTH)])
    self.norm = nnx.LayerNorm(WIDTH, rngs=rngs)
    self.head = nnx.Linear(WIDTH, CLASSES, rngs=rngs)

  def __call__(self, images):
    x = self.patch_embed(images)
    b, h, w, d = x.shape
    x = x.reshape(b, h * w, d)
    x = jnp.concatenate([jnp.broadcast_to(self.cls[...], (b, 1, d)), x], axis=1)
    x = x + self.pos_embed[...]
    for block in self.blocks:
      x = block(x)
    return self.head(self.norm(x)[:, 0])


def linen_vit(seed: int = 0):
  """``(module, variables)`` of the linen toy ViT with random weights."""
  module = LinenViT()
  init = jax.jit(module.init)  # one compiled program instead of eager op-by-op
  return module, init(jax.random.PRNGKey(seed), jnp.zeros((1, SIZE, SIZE, 3)))


def nnx_vit(seed: int = 0) -> NNXViT:
  """The NNX toy ViT with random weights."""
  return NNXViT(nnx.Rngs(seed))
