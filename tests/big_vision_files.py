"""Synthetic checkpoints in exactly big_vision's layout (tests only).

Written from big_vision's own code, not atlasjax's writer:
``two_towers.Model`` names its towers ``img`` and ``txt`` beside the
parameters ``t`` and ``b``; a SigLIP image tower is ``vit._Model`` with
``pool_type="map"`` (``MAPHead_0``) and, with ``scan=True``, its blocks
stacked in ``Transformer/encoderblock``; the text tower is
``text_transformer._Model`` (``Embed_0``, ``Encoder_0``); ``utils.save``
writes ``params/…`` keys. The text tower is filled with NaN: a loader that
read it would refuse the file.
"""

from __future__ import annotations

import numpy as np

WIDTH, DEPTH, MLP, HEADS, PATCH, GRID = 32, 2, 64, 4, 8, 4
SIZE = PATCH * GRID


def block_layout(width, mlp_dim, heads):
  """``{key: shape}`` of one big_vision ``Encoder1DBlock`` (linen names)."""
  hd = width // heads
  shapes = {f"{ln}/{p}": (width,) for ln in ("LayerNorm_0", "LayerNorm_1")
            for p in ("scale", "bias")}
  for qkv in ("query", "key", "value"):
    shapes[f"MultiHeadDotProductAttention_0/{qkv}/kernel"] = (width, heads, hd)
    shapes[f"MultiHeadDotProductAttention_0/{qkv}/bias"] = (heads, hd)
  shapes["MultiHeadDotProductAttention_0/out/kernel"] = (heads, hd, width)
  shapes["MultiHeadDotProductAttention_0/out/bias"] = (width,)
  shapes["MlpBlock_0/Dense_0/kernel"] = (width, mlp_dim)
  shapes["MlpBlock_0/Dense_0/bias"] = (mlp_dim,)
  shapes["MlpBlock_0/Dense_1/kernel"] = (mlp_dim, width)
  shapes["MlpBlock_0/Dense_1/bias"] = (width,)
  return shapes


def encoder_layout(width, depth, mlp_dim, heads, scan, module="Transformer"):
  shapes = {f"{module}/encoder_norm/{p}": (width,) for p in ("scale", "bias")}
  for key, shape in block_layout(width, mlp_dim, heads).items():
    if scan:
      shapes[f"{module}/encoderblock/{key}"] = (depth,) + shape
    else:
      shapes.update({f"{module}/encoderblock_{i}/{key}": shape for i in range(depth)})
  return shapes


def vit_layout(width=WIDTH, depth=DEPTH, mlp_dim=MLP, heads=HEADS, patch=PATCH,
               grid=GRID, *, pool="map", classes=0, rep=0, scan=True,
               posemb="learn", registers=0):
  """``{key: shape}`` of big_vision's ``vit._Model`` (current layout)."""
  shapes = {"embedding/kernel": (patch, patch, 3, width), "embedding/bias": (width,),
            **encoder_layout(width, depth, mlp_dim, heads, scan)}
  if posemb == "learn":
    shapes["pos_embedding"] = (1, grid * grid, width)
  if pool == "tok":
    shapes["cls"] = (1, 1, width)
  if registers:
    shapes["registers"] = (1, registers, width)
  if pool == "map":
    shapes["MAPHead_0/probe"] = (1, 1, width)
    shapes.update({"MAPHead_0/" + k: s for k, s in block_layout(width, mlp_dim, heads).items()
                   if not k.startswith("LayerNorm_1")})
  features = width
  if rep:
    shapes.update({"pre_logits/kernel": (width, rep), "pre_logits/bias": (rep,)})
    features = rep
  if classes:
    shapes.update({"head/kernel": (features, classes), "head/bias": (classes,)})
  return shapes


def text_layout(width=WIDTH, vocab=50, length=8, out=WIDTH):
  """big_vision's ``text_transformer._Model`` with ``scan=True``."""
  return {"Embed_0/embedding": (vocab, width), "pos_embedding": (1, length, width),
          **encoder_layout(width, 1, 2 * width, 2, True, module="Encoder_0"),
          "head/kernel": (width, out), "head/bias": (out,)}


def two_tower(image_shapes, text=True):
  """A SigLIP checkpoint: ``params/img/…``, ``params/txt/…``, ``params/t``, ``params/b``."""
  shapes = {f"params/img/{k}": s for k, s in image_shapes.items()}
  if text:
    shapes.update({f"params/txt/{k}": s for k, s in text_layout().items()})
  shapes.update({"params/t": (1,), "params/b": (1,)})
  return shapes


def random_arrays(shapes, seed=0):
  """Random values (LayerNorm scales near 1); ``txt/`` all NaN (never to be read)."""
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in shapes.items():
    value = rng.normal(size=shape) * (0.1 if key.endswith("scale") else 0.3)
    value = value + key.endswith("scale")
    out[key] = np.full(shape, np.nan) if "/txt/" in key else value
  return {k: v.astype(np.float32) for k, v in out.items()}


def write(tmp_path, name, arrays):
  path = tmp_path / name
  np.savez(path, **arrays)
  return path
