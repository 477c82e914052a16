"""InceptionV1 (GoogLeNet) as a Flax module driven by an architecture spec.

The architecture is data: an :class:`InceptionV1Spec` lists the stem
operations and the inception blocks with their branch widths, the pooling
convention, LRN constants, the number of classes and the input convention.
:class:`InceptionV1` is a ``flax.linen.Module`` built from a spec; its pure
``InceptionV1(spec).apply(variables, images, layers=None, perturb=None)``
returns Lucid-named outputs:

  conv2d0, maxpool0, localresponsenorm0, conv2d1, conv2d2, localresponsenorm1,
  maxpool1, mixed3a, mixed3b, maxpool4, mixed4a … mixed4e, maxpool10, mixed5a,
  mixed5b, avgpool, logits, probs

Every convolution also has a ``<name>_pre_relu`` twin, and each block exposes its
branches (``mixed4c_1x1``, ``mixed4c_3x3_bottleneck``, ``mixed4c_3x3``,
``mixed4c_5x5_bottleneck``, ``mixed4c_5x5``, ``mixed4c_pool_reduce`` and their
``_pre_relu``). ``mixed4c_pre_relu`` is the concatenation of the branch
pre-activations, so ``mixed4c == relu(mixed4c_pre_relu)`` as in Lucid.

``BVLC_GOOGLENET`` matches ``bvlc_googlenet/deploy.prototxt`` exactly: Caffe's
ceil-mode max pooling, LRN across 5 channels with alpha 1e-4 (divided by the
window size, as Caffe does), beta 0.75, k 1, BGR input in 0..255 minus the
ImageNet mean. The network is fully convolutional up to ``mixed5b``; the head
averages globally, which equals Caffe's 7×7 average pool at 224 px.

Variables are a standard Flax tree whose scopes carry Lucid's names::

  {"params": {"conv2d0": {"kernel": [7, 7, 3, 64], "bias": [64]}, ...,
              "mixed3a": {"1x1": {...}, "3x3_bottleneck": {...}, "3x3": {...},
                          "5x5_bottleneck": {...}, "5x5": {...},
                          "pool_reduce": {...}}, ...,
              "logits": {"kernel": [1024, 1000], "bias": [1000]}}}

:mod:`atlasjax.models.weights` converts the BVLC files into it; orbax saves and
restores it like any Flax checkpoint. :func:`build` wraps the module into the
library's :class:`~atlasjax.models.base.Model` through the one Flax adapter,
:func:`atlasjax.models.flax_adapter.from_flax`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from atlasjax.models import base

# The three 1×1 convolutions of a block that read the block input are run as one
# wider convolution: same maths, better use of the matrix units on CPU and GPU.
_FUSED_REDUCE_BRANCHES = ("1x1", "3x3_bottleneck", "5x5_bottleneck")
# Lucid's branch names and their BVLC (Caffe) counterparts.
BRANCH_SOURCES = {"1x1": "1x1", "3x3_bottleneck": "3x3_reduce", "3x3": "3x3",
                  "5x5_bottleneck": "5x5_reduce", "5x5": "5x5",
                  "pool_reduce": "pool_proj"}
LOGITS = "logits"


@dataclasses.dataclass(frozen=True)
class InputConvention:
  """How the model wants its pixels: ``(rgb_or_bgr(x * scale) - mean)``."""
  bgr: bool = True
  scale: float = 255.0
  mean: tuple[float, float, float] = (104.0, 117.0, 123.0)  # in model channel order


@dataclasses.dataclass(frozen=True)
class LRNSpec:
  """Local response normalisation across channels (Caffe's ACROSS_CHANNELS).

  ``y = x / (k + alpha / size * sum_{window} x^2) ** beta``.
  """
  size: int = 5
  alpha: float = 1e-4
  beta: float = 0.75
  k: float = 1.0


@dataclasses.dataclass(frozen=True)
class Conv:
  name: str       # Lucid output name, e.g. "conv2d0"
  source: str     # weights key, e.g. "conv1/7x7_s2"
  features: int
  kernel: int
  stride: int = 1
  padding: int = 0


@dataclasses.dataclass(frozen=True)
class MaxPool:
  name: str
  window: int = 3
  stride: int = 2
  padding: int = 0


@dataclasses.dataclass(frozen=True)
class LRN:
  name: str


@dataclasses.dataclass(frozen=True)
class Inception:
  """One inception block: four branches concatenated along channels."""
  name: str       # "mixed3a"
  source: str     # "inception_3a"
  c1x1: int
  c3x3_reduce: int
  c3x3: int
  c5x5_reduce: int
  c5x5: int
  pool_proj: int

  @property
  def depth(self) -> int:
    """Output channels: the four branches concatenated."""
    return self.c1x1 + self.c3x3 + self.c5x5 + self.pool_proj


Op = Conv | MaxPool | LRN | Inception


@dataclasses.dataclass(frozen=True)
class InceptionV1Spec:
  name: str
  ops: tuple[Op, ...]
  num_classes: int = 1000
  classifier: str = "loss3/classifier"
  lrn: LRNSpec = LRNSpec()
  ceil_mode: bool = True
  input: InputConvention = InputConvention()
  input_size: int = 224
  # The smallest side for which every output down to mixed5b keeps ≥ 1 pixel,
  # found by ``flax_adapter.infer_min_size`` (checked in
  # tests/models/test_inception_v1.py); below it a pooling window empties.
  min_size: int = 31
  default_layer: str = "mixed4c"


BVLC_GOOGLENET = InceptionV1Spec(
    name="bvlc_googlenet",
    ops=(
        Conv("conv2d0", "conv1/7x7_s2", 64, kernel=7, stride=2, padding=3),
        MaxPool("maxpool0"),
        LRN("localresponsenorm0"),
        Conv("conv2d1", "conv2/3x3_reduce", 64, kernel=1),
        Conv("conv2d2", "conv2/3x3", 192, kernel=3, padding=1),
        LRN("localresponsenorm1"),
        MaxPool("maxpool1"),
        Inception("mixed3a", "inception_3a", 64, 96, 128, 16, 32, 32),
        Inception("mixed3b", "inception_3b", 128, 128, 192, 32, 96, 64),
        MaxPool("maxpool4"),
        Inception("mixed4a", "inception_4a", 192, 96, 208, 16, 48, 64),
        Inception("mixed4b", "inception_4b", 160, 112, 224, 24, 64, 64),
        Inception("mixed4c", "inception_4c", 128, 128, 256, 24, 64, 64),
        Inception("mixed4d", "inception_4d", 112, 144, 288, 32, 64, 64),
        Inception("mixed4e", "inception_4e", 256, 160, 320, 32, 128, 128),
        MaxPool("maxpool10"),
        Inception("mixed5a", "inception_5a", 256, 160, 320, 32, 128, 128),
        Inception("mixed5b", "inception_5b", 384, 192, 384, 48, 128, 128),
    ),
)

SPECS = {BVLC_GOOGLENET.name: BVLC_GOOGLENET}


# ----------------------------------------------------------------------------
# Primitive ops (NHWC activations, HWIO kernels).

def conv2d(x, kernel, bias, stride=1, padding=0):
  """NHWC convolution with HWIO ``kernel``, symmetric zero ``padding``, plus ``bias``."""
  y = lax.conv_general_dilated(
      x, kernel, window_strides=(stride, stride),
      padding=((padding, padding), (padding, padding)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + bias


def pool_output_size(size: int, window: int, stride: int, padding: int,
                     ceil_mode: bool) -> int:
  """Caffe's pooling output size (ceil mode drops a window starting in the pad)."""
  span = size + 2 * padding - window
  out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
  if ceil_mode and padding and (out - 1) * stride >= size + padding:
    out -= 1
  return out


def max_pool(x, window, stride, padding=0, ceil_mode=True):
  """Max pooling with Caffe's ceil-mode output size (padding with -inf)."""
  _, h, w, _ = x.shape
  pads = []
  for size in (h, w):
    out = pool_output_size(size, window, stride, padding, ceil_mode)
    pads.append((padding, (out - 1) * stride + window - size - padding))
  return lax.reduce_window(
      x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1),
      ((0, 0), pads[0], pads[1], (0, 0)))


def local_response_norm(x, spec: LRNSpec):
  """Caffe's across-channel LRN: ``x / (k + alpha/size * sum x²)^beta``."""
  half = spec.size // 2
  sq_sum = lax.reduce_window(
      x * x, 0.0, lax.add, (1, 1, 1, spec.size), (1, 1, 1, 1),
      ((0, 0), (0, 0), (0, 0), (half, spec.size - 1 - half)))
  return x * (spec.k + (spec.alpha / spec.size) * sq_sum) ** -spec.beta


def to_model_input(images, convention: InputConvention):
  """RGB in [0, 1] → the spec's convention, in the images' own float dtype
  (float32 normally; bfloat16 when the renderer runs the network in bf16)."""
  dtype = images.dtype if jnp.issubdtype(images.dtype, jnp.floating) else jnp.float32
  x = images.astype(dtype) * convention.scale
  if convention.bgr:
    x = x[..., ::-1]
  return x - jnp.asarray(convention.mean, dtype)


# ----------------------------------------------------------------------------
# Layer metadata.

def _branch_depths(block: Inception) -> dict[str, int]:
  return {
      "1x1": block.c1x1,
      "3x3_bottleneck": block.c3x3_reduce,
      "3x3": block.c3x3,
      "5x5_bottleneck": block.c5x5_reduce,
      "5x5": block.c5x5,
      "pool_reduce": block.pool_proj,
  }


def layer_metadata(spec: InceptionV1Spec) -> tuple[base.Layer, ...]:
  """The :class:`~atlasjax.models.base.Layer` of every named output."""
  layers: list[base.Layer] = []
  stride, depth = 1, 3
  for op in spec.ops:
    if isinstance(op, Conv):
      stride *= op.stride
      depth = op.features
      layers += [base.Layer(op.name + "_pre_relu", depth, stride),
                 base.Layer(op.name, depth, stride)]
    elif isinstance(op, MaxPool):
      stride *= op.stride
      layers.append(base.Layer(op.name, depth, stride))
    elif isinstance(op, LRN):
      layers.append(base.Layer(op.name, depth, stride))
    else:
      for branch, d in _branch_depths(op).items():
        layers += [base.Layer(f"{op.name}_{branch}_pre_relu", d, stride),
                   base.Layer(f"{op.name}_{branch}", d, stride)]
      depth = op.depth
      layers += [base.Layer(op.name + "_pre_relu", depth, stride),
                 base.Layer(op.name, depth, stride)]
  layers += [base.Layer("avgpool", depth, 0),
             base.Layer("logits", spec.num_classes, 0),
             base.Layer("probs", spec.num_classes, 0)]
  return tuple(layers)


def _op_outputs(op: Op) -> tuple[str, ...]:
  if isinstance(op, Conv):
    return (op.name + "_pre_relu", op.name)
  if isinstance(op, Inception):
    names = []
    for branch in _branch_depths(op):
      names += [f"{op.name}_{branch}_pre_relu", f"{op.name}_{branch}"]
    return tuple(names) + (op.name + "_pre_relu", op.name)
  return (op.name,)


# ----------------------------------------------------------------------------
# The Flax module.

class ConvParams(nn.Module):
  """The ``kernel`` (HWIO) and ``bias`` of one convolution, as a Flax scope.

  The convolutions themselves run as ``lax`` calls in :class:`InceptionV1`, so a
  block's three 1×1 convolutions can share one fused call.
  """
  shape: tuple[int, int, int, int]

  @nn.compact
  def __call__(self):
    kernel = self.param("kernel", nn.initializers.he_normal(), self.shape)
    bias = self.param("bias", nn.initializers.zeros, self.shape[-1:])
    return kernel, bias


class InceptionBlock(nn.Module):
  """One inception block: four branches concatenated along channels."""
  block: Inception

  @nn.compact
  def __call__(self, x, acts: dict):
    b = self.block
    cin = x.shape[-1]
    shapes = {"1x1": (1, 1, cin, b.c1x1),
              "3x3_bottleneck": (1, 1, cin, b.c3x3_reduce),
              "3x3": (3, 3, b.c3x3_reduce, b.c3x3),
              "5x5_bottleneck": (1, 1, cin, b.c5x5_reduce),
              "5x5": (5, 5, b.c5x5_reduce, b.c5x5),
              "pool_reduce": (1, 1, cin, b.pool_proj)}
    p = {name: ConvParams(shape, name=name)() for name, shape in shapes.items()}
    reduce_kernel = jnp.concatenate([p[n][0] for n in _FUSED_REDUCE_BRANCHES], -1)
    reduce_bias = jnp.concatenate([p[n][1] for n in _FUSED_REDUCE_BRANCHES])
    fused = conv2d(x, reduce_kernel, reduce_bias)
    b1, b3r, b5r = jnp.split(fused, [b.c1x1, b.c1x1 + b.c3x3_reduce], axis=-1)
    b3 = conv2d(jax.nn.relu(b3r), *p["3x3"], padding=1)
    b5 = conv2d(jax.nn.relu(b5r), *p["5x5"], padding=2)
    bp = conv2d(max_pool(x, 3, 1, padding=1, ceil_mode=True), *p["pool_reduce"])
    pre = {"1x1": b1, "3x3_bottleneck": b3r, "3x3": b3, "5x5_bottleneck": b5r,
           "5x5": b5, "pool_reduce": bp}
    for branch, value in pre.items():
      acts[f"{b.name}_{branch}_pre_relu"] = value
      acts[f"{b.name}_{branch}"] = jax.nn.relu(value)
    out = acts[b.name + "_pre_relu"] = jnp.concatenate([b1, b3, b5, bp], axis=-1)
    acts[b.name] = out = jax.nn.relu(out)
    return out


def main_path(spec: InceptionV1Spec) -> tuple[str, ...]:
  """Outputs the next op reads as they are: the ones ``perturb`` accepts."""
  return tuple(_op_outputs(op)[-1] for op in spec.ops)


class InceptionV1(nn.Module):
  """InceptionV1 built from ``spec``; ``__call__`` returns Lucid-named outputs.

  ``images`` are NHWC RGB in [0, 1] (converted to the spec's input convention
  here). ``layers`` (a name or tuple of names) returns just those outputs and
  stops the forward pass once they exist. ``perturb`` maps main-path outputs
  (:func:`main_path`: conv/pool/LRN/block outputs) to arrays added to them
  before the rest of the network reads them; ``jax.jvp`` through it linearises
  the downstream network (the atlas attributions and Grad-CAM do this).
  """
  spec: InceptionV1Spec = BVLC_GOOGLENET

  @nn.compact
  def __call__(self, images, layers: Sequence[str] | str | None = None,
               perturb: dict | None = None):
    spec = self.spec
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(
          f"images must be NHWC with 3 RGB channels, got shape {images.shape}")
    if min(images.shape[1:3]) < spec.min_size:
      raise ValueError(
          f"{spec.name} needs images of at least {spec.min_size} px per side, "
          f"got {images.shape[1:3]}; resize or pad the input")
    metadata = layer_metadata(spec)
    wanted = None
    if layers is not None:
      wanted = {layers} if isinstance(layers, str) else set(layers)
      unknown = wanted - {layer.name for layer in metadata}
      if unknown:
        raise base.UnknownLayerError(
            f"Unknown layer(s) {sorted(unknown)} for model {spec.name!r}. "
            "Valid layers: " + ", ".join(layer.name for layer in metadata))
    perturb = perturb or {}
    chain = main_path(spec)
    if set(perturb) - set(chain):
      raise base.NotPerturbableError(
          f"Cannot perturb {sorted(set(perturb) - set(chain))}: only outputs on "
          f"the main path can be perturbed ({', '.join(chain)}).")
    acts: dict[str, jax.Array] = {}

    def done():
      return wanted is not None and wanted <= acts.keys()

    x = to_model_input(images, spec.input)
    for op in spec.ops:
      if isinstance(op, Conv):
        kernel, bias = ConvParams(
            (op.kernel, op.kernel, x.shape[-1], op.features), name=op.name)()
        x = conv2d(x, kernel, bias, op.stride, op.padding)
        acts[op.name + "_pre_relu"] = x
        acts[op.name] = x = jax.nn.relu(x)
      elif isinstance(op, MaxPool):
        acts[op.name] = x = max_pool(x, op.window, op.stride, op.padding,
                                     spec.ceil_mode)
      elif isinstance(op, LRN):
        acts[op.name] = x = local_response_norm(x, spec.lrn)
      else:
        x = InceptionBlock(op, name=op.name)(x, acts)
      name = _op_outputs(op)[-1]
      if name in perturb:
        acts[name] = x = x + perturb[name]
      if done() and not self.is_initializing():
        return {name: acts[name] for name in wanted}
    pooled = acts["avgpool"] = x.mean(axis=(1, 2))
    logits = acts[LOGITS] = nn.Dense(
        spec.num_classes, name=LOGITS,
        kernel_init=nn.initializers.lecun_normal())(pooled)
    acts["probs"] = jax.nn.softmax(logits, axis=-1)
    if wanted is not None:
      return {name: acts[name] for name in wanted}
    return acts


def relu_twins(spec: InceptionV1Spec) -> tuple[tuple[str, str], ...]:
  """Every ``(L, L_pre_relu)`` pair: ``L == relu(L_pre_relu)`` by construction."""
  names = {layer.name for layer in layer_metadata(spec)}
  return tuple((n[:-len("_pre_relu")], n) for n in sorted(names)
               if n.endswith("_pre_relu") and n[:-len("_pre_relu")] in names)


def build(spec: InceptionV1Spec = BVLC_GOOGLENET) -> base.Model:
  """The library :class:`~atlasjax.models.base.Model` of ``InceptionV1(spec)``."""
  from atlasjax.models import flax_adapter  # the adapter imports this module's users
  return flax_adapter.from_flax(
      InceptionV1(spec), None, name=spec.name, input_size=spec.input_size,
      min_size=spec.min_size, relu_twins=relu_twins(spec),
      perturbable=main_path(spec), default_layer=spec.default_layer,
      cam_layer=spec.ops[-1].name, classifier=("params", LOGITS))[0]


def init(key: jax.Array, spec: InceptionV1Spec = BVLC_GOOGLENET,
         size: int | None = None) -> dict:
  """Random Flax variables with the right shapes, for tests and variants."""
  size = size or spec.input_size
  return InceptionV1(spec).init(key, jnp.zeros((1, size, size, 3), jnp.float32))
