"""A plain-NumPy reference of the first layers of BVLC GoogLeNet.

Written from ``bvlc_googlenet/deploy.prototxt`` and the data README only; it
shares no code with :mod:`atlasjax` (no ops, no weight loader, no spec). It
runs in float64 so that its own rounding error is negligible next to the
float32 model it checks.

Covers the path ``data -> conv1/7x7_s2 -> relu -> pool1/3x3_s2 -> pool1/norm1
-> conv2/3x3_reduce -> relu -> conv2/3x3 -> relu -> conv2/norm2 -> pool2/3x3_s2
-> inception_3a/output``, returning Lucid-named activations.
"""

from __future__ import annotations

import math
import os

import numpy as np

# deploy.prototxt / README: BGR, 0..255, minus the per-channel mean (B, G, R).
MEAN_BGR = np.array([104.0, 117.0, 123.0])
# deploy.prototxt: lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } (k = 1).
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 1.0
# deploy.prototxt inception_3a num_output values.
INCEPTION_3A = {"1x1": 64, "3x3_reduce": 96, "3x3": 128, "5x5_reduce": 16,
                "5x5": 32, "pool_proj": 32}


def read_conv(folder, name: str, cin: int):
  """Caffe conv weights from the raw files: ``(out, kh, kw, in)`` and bias."""
  stem = os.path.join(folder, "weights", name)
  bias = np.fromfile(stem + "_bias.bin", dtype="<f4").astype(np.float64)
  flat = np.fromfile(stem + "_filter.bin", dtype="<f4").astype(np.float64)
  k = int(round(math.sqrt(flat.size / (bias.size * cin))))
  assert bias.size * k * k * cin == flat.size, (name, flat.size)
  return flat.reshape(bias.size, k, k, cin), bias


def preprocess(rgb01: np.ndarray) -> np.ndarray:
  """``[N, H, W, 3]`` RGB in [0, 1] -> Caffe input (BGR, 0..255, mean-subtracted)."""
  bgr = rgb01.astype(np.float64)[..., ::-1] * 255.0
  return bgr - MEAN_BGR


def conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int = 1,
         pad: int = 0) -> np.ndarray:
  """Caffe Convolution on NHWC ``x`` with ``(out, kh, kw, in)`` weights.

  Output size ``(H + 2 pad - k) // stride + 1`` (Caffe floors for convs).
  Implemented as a sum over kernel taps of strided slices times a matrix.
  """
  n, h, w, cin = x.shape
  cout, kh, kw, wcin = weight.shape
  assert wcin == cin, (weight.shape, x.shape)
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  oh = (h + 2 * pad - kh) // stride + 1
  ow = (w + 2 * pad - kw) // stride + 1
  out = np.zeros((n, oh, ow, cout))
  for i in range(kh):
    for j in range(kw):
      patch = xp[:, i:i + stride * (oh - 1) + 1:stride,
                 j:j + stride * (ow - 1) + 1:stride, :]
      out += patch @ weight[:, i, j, :].T
  return out + bias


def relu(x: np.ndarray) -> np.ndarray:
  return np.maximum(x, 0.0)


def caffe_pool_size(size: int, kernel: int, stride: int, pad: int) -> int:
  """Caffe's PoolingLayer::Reshape: ceil, then drop a window that starts in the pad."""
  out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
  if pad > 0 and (out - 1) * stride >= size + pad:
    out -= 1
  return out


def max_pool(x: np.ndarray, kernel: int, stride: int, pad: int = 0) -> np.ndarray:
  """Caffe MAX pooling: windows clipped to the (padded) input, pads never win."""
  n, h, w, c = x.shape
  oh = caffe_pool_size(h, kernel, stride, pad)
  ow = caffe_pool_size(w, kernel, stride, pad)
  out = np.empty((n, oh, ow, c))
  for i in range(oh):
    hs = max(i * stride - pad, 0)
    he = min(i * stride - pad + kernel, h)
    for j in range(ow):
      ws = max(j * stride - pad, 0)
      we = min(j * stride - pad + kernel, w)
      out[:, i, j, :] = x[:, hs:he, ws:we, :].max(axis=(1, 2))
  return out


def lrn(x: np.ndarray) -> np.ndarray:
  """Caffe LRN ACROSS_CHANNELS: ``x / (k + alpha/n * sum_window x^2) ** beta``."""
  c = x.shape[-1]
  half = (LRN_SIZE - 1) // 2
  sq = x * x
  scale = np.full(x.shape, LRN_K)
  for ch in range(c):
    lo, hi = max(ch - half, 0), min(ch + half + 1, c)
    scale[..., ch] += LRN_ALPHA / LRN_SIZE * sq[..., lo:hi].sum(axis=-1)
  return x * scale ** -LRN_BETA


def forward(folder, rgb01: np.ndarray) -> dict[str, np.ndarray]:
  """Activations up to ``mixed3a`` (Lucid names) from RGB images in [0, 1]."""
  acts = {}
  x = preprocess(rgb01)
  w, b = read_conv(folder, "conv1/7x7_s2", 3)
  acts["conv2d0_pre_relu"] = x = conv(x, w, b, stride=2, pad=3)
  acts["conv2d0"] = x = relu(x)
  acts["maxpool0"] = x = max_pool(x, 3, 2)
  acts["localresponsenorm0"] = x = lrn(x)
  w, b = read_conv(folder, "conv2/3x3_reduce", x.shape[-1])
  acts["conv2d1_pre_relu"] = x = conv(x, w, b)
  acts["conv2d1"] = x = relu(x)
  w, b = read_conv(folder, "conv2/3x3", x.shape[-1])
  acts["conv2d2_pre_relu"] = x = conv(x, w, b, pad=1)
  acts["conv2d2"] = x = relu(x)
  acts["localresponsenorm1"] = x = lrn(x)
  acts["maxpool1"] = x = max_pool(x, 3, 2)

  # inception_3a: four branches on pool2/3x3_s2, each conv followed by ReLU.
  cin = x.shape[-1]
  def conv_relu(inp, name, pad=0):
    w, b = read_conv(folder, f"inception_3a/{name}", inp.shape[-1])
    assert w.shape[0] == INCEPTION_3A[name], (name, w.shape)
    return relu(conv(inp, w, b, pad=pad))
  b1 = conv_relu(x, "1x1")
  b3 = conv_relu(conv_relu(x, "3x3_reduce"), "3x3", pad=1)
  b5 = conv_relu(conv_relu(x, "5x5_reduce"), "5x5", pad=2)
  bp = conv_relu(max_pool(x, 3, 1, pad=1), "pool_proj")
  assert cin == 192
  acts["mixed3a_1x1"], acts["mixed3a_3x3"] = b1, b3
  acts["mixed3a_5x5"], acts["mixed3a_pool_reduce"] = b5, bp
  acts["mixed3a"] = np.concatenate([b1, b3, b5, bp], axis=-1)
  return acts


def max_rel_error(actual, expected) -> float:
  """``max|actual - expected| / max|expected|`` (scale-free, robust to zeros)."""
  actual = np.asarray(actual, np.float64)
  expected = np.asarray(expected, np.float64)
  assert actual.shape == expected.shape, (actual.shape, expected.shape)
  return float(np.abs(actual - expected).max() / np.abs(expected).max())


# ---------------------------------------------------------------------------
# A plain-NumPy big_vision ViT, written from big_vision/models/vit.py
# (``_Model``, ``Encoder1DBlock``, ``MlpBlock``, ``MAPHead``,
# ``posemb_sincos_2d``) and reading a checkpoint's raw keys (current layout:
# ``embedding``, ``pos_embedding``, ``Transformer/encoderblock_K`` or the
# stacked ``Transformer/encoderblock``, ``MAPHead_0``, ``pre_logits``,
# ``head``). float64; shares no code with atlasjax.

BV_LAYERNORM_EPSILON = 1e-6   # flax.linen.LayerNorm's default, which big_vision keeps


def bv_layernorm(x, p):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + BV_LAYERNORM_EPSILON) * p["scale"] + p["bias"]


def bv_gelu(x):
  """flax.linen.gelu: the tanh approximation."""
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def bv_attention(queries, tokens, p):
  """flax MultiHeadDotProductAttention on ``[Nq, D]`` queries and ``[N, D]`` tokens."""
  q = np.einsum("nd,dhk->nhk", queries, p["query"]["kernel"]) + p["query"]["bias"]
  k, v = (np.einsum("nd,dhk->nhk", tokens, p[n]["kernel"]) + p[n]["bias"]
          for n in ("key", "value"))
  logits = np.einsum("qhk,phk->hqp", q, k) / np.sqrt(q.shape[-1])
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  return (np.einsum("hqp,phk,hkd->qd", w, v, p["out"]["kernel"], optimize=True)
          + p["out"]["bias"])


def bv_mlp(x, p):
  hidden = bv_gelu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
  return hidden @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]


def bv_sincos2d(h, w, width, temperature=10_000.0):
  y, x = np.mgrid[:h, :w]
  omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1))
  y, x = np.outer(y.ravel(), omega), np.outer(x.ravel(), omega)
  return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)


def bv_tree(flat, prefix=""):
  """The nested float64 tree of the keys under ``prefix`` (e.g. ``params/img/``)."""
  tree = {}
  for key, value in flat.items():
    if key.startswith(prefix):
      *path, leaf = key[len(prefix):].split("/")
      node = tree
      for part in path:
        node = node.setdefault(part, {})
      node[leaf] = np.asarray(value, np.float64)
  return tree


def _bv_block(t, i):
  enc = t["Transformer"]
  if "encoderblock" in enc:   # lax.scan layout: every leaf stacked on axis 0
    def take(node):
      return {k: take(v) if isinstance(v, dict) else v[i] for k, v in node.items()}
    return take(enc["encoderblock"])
  return enc[f"encoderblock_{i}"]


def _bv_depth(t):
  enc = t["Transformer"]
  if "encoderblock" in enc:
    return len(enc["encoderblock"]["LayerNorm_0"]["scale"])
  return sum(k.startswith("encoderblock_") for k in enc)


def big_vision_vit(t, image, pool):
  """big_vision's ``out`` dict for one ``[H, W, 3]`` image in [-1, 1].

  ``t`` is a :func:`bv_tree`; ``pool`` big_vision's ``pool_type`` (the
  checkpoint does not say "gap" from "none"). Register tokens (a ``registers``
  array, atlasjax's extension) sit after the CLS token.
  """
  kernel = t["embedding"]["kernel"]
  patch, width = kernel.shape[0], kernel.shape[-1]
  h, w = image.shape[0] // patch, image.shape[1] // patch
  patches = image[:h * patch, :w * patch].reshape(h, patch, w, patch, 3)
  patches = patches.transpose(0, 2, 1, 3, 4).reshape(h * w, -1)
  x = patches @ kernel.reshape(-1, width) + t["embedding"]["bias"]
  x = x + (t["pos_embedding"][0] if "pos_embedding" in t else bv_sincos2d(h, w, width))
  prefix = [t[k][0] for k in ("cls", "registers") if k in t]
  x = np.concatenate(prefix + [x])
  out = {}
  for i in range(_bv_depth(t)):
    blk = _bv_block(t, i)
    x = x + bv_attention(*(2 * [bv_layernorm(x, blk["LayerNorm_0"])]),
                         blk["MultiHeadDotProductAttention_0"])
    mlp = blk["MlpBlock_0"]
    hidden = out[f"block{i}/mlp/hidden"] = bv_gelu(
        bv_layernorm(x, blk["LayerNorm_1"]) @ mlp["Dense_0"]["kernel"]
        + mlp["Dense_0"]["bias"])
    x = x + hidden @ mlp["Dense_1"]["kernel"] + mlp["Dense_1"]["bias"]
  x = out["encoded"] = bv_layernorm(x, t["Transformer"]["encoder_norm"])
  patches_out = x[sum(len(p) for p in prefix):]
  if pool == "map":
    m = t["MAPHead_0"]
    pooled = bv_attention(m["probe"][0], patches_out, m["MultiHeadDotProductAttention_0"])
    out["map_pooled"] = pooled[0]
    x = (pooled + bv_mlp(bv_layernorm(pooled, m["LayerNorm_0"]), m["MlpBlock_0"]))[0]
  elif pool == "gap":
    x = patches_out.mean(0)
  elif pool == "tok":
    x = x[0]
  if pool != "none":
    out["head_input"] = x
  if "pre_logits" in t:
    x = np.tanh(x @ t["pre_logits"]["kernel"] + t["pre_logits"]["bias"])
  out["pre_logits"] = x
  if "head" in t:
    out["logits"] = x @ t["head"]["kernel"] + t["head"]["bias"]
  return out


def big_vision_vit_params(width, depth, mlp_dim, heads, patch, tokens, pool,
                          num_classes=0, rep_size=0):
  """Parameter count of big_vision's ``vit._Model`` by its module definitions.

  Counted from big_vision/models/vit.py: the ``embedding`` Conv (kernel
  ``patch·patch·3·width`` + bias), the learned ``pos_embedding``
  ``[1, tokens, width]``, per ``Encoder1DBlock`` two LayerNorms (scale and
  bias), a MultiHeadDotProductAttention (query/key/value kernels
  ``[width, heads, width/heads]`` with biases, out kernel
  ``[heads, width/heads, width]`` + bias) and an ``MlpBlock`` (two Dense);
  ``encoder_norm``; ``MAPHead`` (probe ``[1, 1, width]``, attention,
  LayerNorm, MlpBlock); ``cls`` for ``tok``; ``pre_logits``; ``head``.
  """
  del heads   # the attention's parameter count does not depend on the split
  layernorm = 2 * width
  attention = 4 * (width * width + width)
  mlp = 2 * width * mlp_dim + mlp_dim + width
  n = patch * patch * 3 * width + width + tokens * width
  n += depth * (2 * layernorm + attention + mlp) + layernorm
  if pool == "map":
    n += width + attention + layernorm + mlp
  if pool == "tok":
    n += width
  features = width
  if rep_size:
    n += features * rep_size + rep_size
    features = rep_size
  if num_classes:
    n += features * num_classes + num_classes
  return n
