"""One adapter from any Flax model (linen or NNX) to the library's model protocol.

``from_flax(module, variables)`` returns ``(model, params)`` where
``model.apply(params, images, layers=None, perturb=None)`` is pure and returns
a dict of named outputs, and ``model.layers`` is inferred — nobody writes a
layer table. Three kinds of module are accepted:

* **native**: a linen module whose ``__call__`` takes ``layers`` and
  ``perturb`` and returns a dict of named outputs (atlasjax's own
  :class:`~atlasjax.models.inception_v1.InceptionV1` and
  :class:`~atlasjax.models.efficientnet_lite.EfficientNetLite`). It is called
  as it is.
* **linen**, anything else: every submodule's ``__call__`` output is a named
  output, named by its module path (``"stage3/block2"``, ``"Conv_0"``), and the
  root's output is ``"logits"`` (2-D) or ``"output"``; a module that returns a
  dict of named outputs (big_vision style) contributes those names as they are.
  Outputs are read and perturbed through ``flax.linen.intercept_methods`` —
  the interception Flax itself provides, active only inside ``apply``.
* **NNX**: an ``nnx.Module`` instance. It is split once with ``nnx.split``; the
  pure ``apply`` merges the state into a fresh copy (``nnx.merge``), puts it in
  evaluation mode and calls it. Submodule outputs are named and perturbed by
  wrapping the submodules' classes' ``__call__`` for the duration of the call —
  the mechanism ``nnx.capture(method_outputs=...)`` uses — and only the
  merged copy's instances are touched.

**Module inputs.** The same interception reads each submodule's first
argument: where it is an array that no named output already is (the very same
traced value), it becomes the output ``"<path>:input"``. This reaches values
computed by plain functions between modules — a transformer MLP's hidden layer
``gelu(fc1(x))`` is ``"block0/fc2:input"``, a pooled feature vector is
``"head:input"`` — while a block's input that is just the previous block's
output adds no duplicate name.

**Token grids (Vision Transformers).** An output ``[B, N, D]`` with
``N = P + h·w``, where ``(h, w)`` is the network's patch grid, is a spatial
layer: the ``P`` prefix tokens (CLS, registers; ``0 ≤ P ≤ MAX_PREFIX_TOKENS``)
are dropped and the patch tokens are laid out row-major as ``[B, h, w, D]``
(:class:`TokenGrid`), with stride ``input_size / h``. The patch grid is
inferred: the first strided square ``[B, h, w, C]`` output (the patch
embedding) whose ``h·w`` fits the token outputs; ``token_grid=(h, w)`` in
:func:`from_flax` overrides it (a ViT that embeds patches without a
convolution). ``perturb`` on a token layer takes the grid ``[B, h, w, D]`` and
adds it to the patch tokens (the prefix tokens are not perturbed), so
attributions and layer gradients work unchanged. Attention internals are
never images: outputs with a token axis that are not ``[B, N, D]`` (the
per-head ``query/key/value`` ``[B, N, heads, head_dim]``, attention weights
``[B, heads, N, N]``) are left out, and so is any non-square 4-D output (the
input is square, so its feature maps are).

**Fixed input size.** A module that runs only at ``input_size`` (learned
position embeddings, a flattening head) is detected — its abstract forward
pass fails at twice that size — and marked ``Model.fixed_input_size``. Its
``apply`` then resamples any other input to exactly ``input_size`` with a
differentiable ``jax.image.resize`` before the module sees it, so every view
the renderer's transforms, the atlas icons and collection feed it is taken;
nothing downstream needs to know. Layer strides stay relative to
``input_size``.

``layers=`` stops the forward pass as soon as every requested output exists
(the adapter ends the trace early), so a feature visualization of an early
layer never computes the rest of the network.

Layer metadata (channels, stride from the input) comes from ``jax.eval_shape``
of one forward pass at ``input_size``; outputs that are not ``[B, H, W, C]``,
token-grid ``[B, N, D]`` or ``[B, C]`` arrays are left out, and ``apply``
returns only the layers. ``min_size`` is, unless declared, the smallest input
side for which that abstract forward pass still succeeds with every spatial
output at least one pixel (1 for a fixed-size model, which resamples).

Compiled programs are cached by the model: its ``key`` holds the module itself
(linen modules compare by their fields) or the NNX graph definition, plus the
adapter's options, so rebuilding the same model in a new notebook cell finds the
programs compiled before.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import inspect
import re
from typing import Any, Callable, Hashable, Sequence

import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from atlasjax.models import base

# Name of the root module's output: ``logits`` when it is [B, classes].
ROOT_LOGITS = "logits"
ROOT_OUTPUT = "output"
PATH_SEP = "/"
# A submodule's first argument, as a named output: ``"block0/fc2:input"``.
INPUT_SUFFIX = ":input"
# Most tokens before the patch tokens (CLS, register tokens) of a token grid.
MAX_PREFIX_TOKENS = 32
# The fixed-input-size probe: a module that fails at this multiple of its
# input size accepts only that size.
FIXED_SIZE_PROBE = 2
# A block's index at the end of its name: ``block7``, ``blocks/7``.
_BLOCK_NUMBER = re.compile(r"\d+$")
# How a fixed-size model resamples other sizes (antialiased when shrinking).
RESAMPLE_METHOD = "linear"


@dataclasses.dataclass(frozen=True)
class Normalize:
  """``(images * scale - mean) / std`` per channel, optionally as BGR.

  The adapter's ``input_convention``: atlasjax hands models NHWC RGB in
  [0, 1]; this turns them into what the module was trained on.
  """
  mean: tuple[float, ...] = (0.0, 0.0, 0.0)
  std: tuple[float, ...] = (1.0, 1.0, 1.0)
  scale: float = 1.0
  bgr: bool = False

  def __call__(self, images):
    x = images * self.scale
    if self.bgr:
      x = x[..., ::-1]
    return (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)


# The usual torchvision/timm ImageNet convention.
IMAGENET_NORMALIZE = Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@dataclasses.dataclass(frozen=True)
class TokenGrid:
  """How a token output ``[B, prefix + height·width, D]`` lies on the patch grid.

  Patch tokens follow the prefix tokens (CLS, registers) in row-major order,
  as a ViT flattens its patch embedding.
  """
  prefix: int
  height: int
  width: int

  def to_grid(self, tokens):
    """``[B, P + h·w, D] -> [B, h, w, D]``: prefix dropped, row-major."""
    return tokens[:, self.prefix:].reshape(
        tokens.shape[0], self.height, self.width, tokens.shape[-1])

  def to_tokens(self, grid):
    """The inverse for offsets: ``[B, h, w, D]`` onto the patch tokens, zero prefix."""
    b, _, _, d = grid.shape
    prefix = jnp.zeros((b, self.prefix, d), grid.dtype)
    return jnp.concatenate([prefix, grid.reshape(b, self.height * self.width, d)], 1)


class _Done(Exception):
  """Ends a forward pass once every requested output exists."""


class _Recorder:
  """Collects named outputs during one call and adds perturbations to them.

  ``grids`` maps token outputs to their :class:`TokenGrid`: their perturbation
  arrives as a grid and is added to the patch tokens.
  """

  def __init__(self, wanted, perturb, grids, images):
    self.wanted = wanted
    self.perturb = perturb or {}
    self.grids = grids
    self.acts: dict[str, jax.Array] = {}
    # ids of the values already named (kept alive by ``acts``/``images``), so
    # a module input that *is* an earlier output adds no duplicate name.
    self.images = images
    self.named = {id(images)}

  def record(self, name: str, out):
    if name in self.acts or not _is_array(out):
      return out
    if name in self.perturb:
      delta = self.perturb[name]
      out = out + (self.grids[name].to_tokens(delta) if name in self.grids else delta)
    self.acts[name] = out
    self.named.add(id(out))
    if self.wanted is not None and self.wanted <= self.acts.keys():
      raise _Done
    return out

  def record_input(self, name: str, args: tuple) -> tuple:
    """``args`` with the first one recorded as ``name:input`` when it is new."""
    if not args or not _is_array(args[0]) or id(args[0]) in self.named:
      return args
    return (self.record(name + INPUT_SUFFIX, args[0]),) + tuple(args[1:])

  def finish(self, out):
    """Records the root's output: a (nested) dict by its names, big_vision's
    ``(x, out)`` as ``out``'s names then ``x``, an array as logits/output."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
      self.finish(out[1])
      out = out[0]
    if isinstance(out, dict):
      for name, value in _flatten(out):
        self.record(name, value)
    else:
      self.record(ROOT_LOGITS if _is_array(out) and out.ndim == 2 else ROOT_OUTPUT, out)

  def select(self, names):
    """The named outputs (all raw ones when ``names`` is None), token grids laid out."""
    names = self.acts.keys() if names is None else names
    return {n: self.grids[n].to_grid(self.acts[n]) if n in self.grids else self.acts[n]
            for n in names}


def _flatten(tree: dict, prefix: str = ""):
  """``(path, value)`` of a nested dict's leaves, paths joined by ``PATH_SEP``."""
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      yield from _flatten(value, name + PATH_SEP)
    else:
      yield name, value


def _is_array(x) -> bool:
  return isinstance(x, (jax.Array, np.ndarray)) or hasattr(x, "aval")


def _accepts(fn, *names) -> bool:
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False
  return all(n in params for n in names)


def _wanted(layers):
  if layers is None:
    return None
  return {layers} if isinstance(layers, str) else set(layers)


@dataclasses.dataclass(frozen=True)
class _View:
  """What the adapted ``apply`` returns: which outputs, token grids laid out."""
  exposed: tuple[str, ...] | None = None    # None: every raw output (metadata)
  grids: tuple[tuple[str, TokenGrid], ...] = ()

  def check(self, wanted):
    if self.exposed is None or wanted is None:
      return
    unknown = sorted(wanted - set(self.exposed))
    if unknown:
      raise base.UnknownLayerError(
          f"layers={unknown} are not layers of this model (attention internals "
          "and non-array outputs are left out); layers: " + ", ".join(self.exposed))


RAW = _View()


# ---------------------------------------------------------------------------
# The three kinds of module.

def _native_apply(module: nn.Module, prepare):
  def apply(params, images, layers=None, perturb=None):
    return module.apply(params, prepare(images), layers=layers, perturb=perturb)
  return apply


def _linen_apply(module: nn.Module, prepare, view: _View):
  def apply(params, images, layers=None, perturb=None):
    wanted = _wanted(layers)
    view.check(wanted)
    x = prepare(images)
    recorder = _Recorder(wanted, perturb, dict(view.grids), x)

    def interceptor(next_fun, args, kwargs, context):
      if context.method_name != "__call__" or not context.module.path:
        return next_fun(*args, **kwargs)
      name = PATH_SEP.join(context.module.path)
      out = next_fun(*recorder.record_input(name, args), **kwargs)
      return recorder.record(name, out)

    try:
      with nn.intercept_methods(interceptor):
        out = module.apply(params, x)
      recorder.finish(out)
    except _Done:
      pass
    return recorder.select(view.exposed if wanted is None else wanted)
  return apply


@contextlib.contextmanager
def _nnx_interception(root: nnx.Module, recorder: _Recorder):
  """Wraps ``__call__`` of ``root``'s submodule classes while the block runs."""
  paths = {}
  for path, sub in nnx.iter_modules(root):
    if path:
      paths.setdefault(id(sub), PATH_SEP.join(str(p) for p in path))
  originals = {}
  for path, sub in nnx.iter_modules(root):
    cls = type(sub)
    if path and cls not in originals and "__call__" in dir(cls):
      originals[cls] = cls.__dict__.get("__call__")
      inner = cls.__call__

      def wrapped(self, *args, __inner=inner, **kwargs):
        name = paths.get(id(self))
        if name is None:
          return __inner(self, *args, **kwargs)
        out = __inner(self, *recorder.record_input(name, args), **kwargs)
        return recorder.record(name, out)

      cls.__call__ = wrapped
  try:
    yield
  finally:
    for cls, original in originals.items():
      if original is None:
        del cls.__call__
      else:
        cls.__call__ = original


def _nnx_apply(graphdef, prepare, native: bool, view: _View):
  def apply(params, images, layers=None, perturb=None):
    module = nnx.merge(graphdef, params)
    if hasattr(module, "eval"):
      module.eval()
    if native:
      return module(prepare(images), layers=layers, perturb=perturb)
    wanted = _wanted(layers)
    view.check(wanted)
    x = prepare(images)
    recorder = _Recorder(wanted, perturb, dict(view.grids), x)
    try:
      with _nnx_interception(module, recorder):
        out = module(x)
      recorder.finish(out)
    except _Done:
      pass
    return recorder.select(view.exposed if wanted is None else wanted)
  return apply


def _resampling(apply, size: int):
  """``apply`` for a fixed-size module: other input sizes are resized to ``size``."""
  def resampled(params, images, layers=None, perturb=None):
    if images.shape[1:3] != (size, size):
      images = jax.image.resize(
          images, (images.shape[0], size, size, images.shape[-1]), RESAMPLE_METHOD)
    return apply(params, images, layers=layers, perturb=perturb)
  return resampled


# ---------------------------------------------------------------------------
# Metadata by abstract evaluation.

def _trace_outputs(apply, params, size: int) -> list[tuple[str, tuple]]:
  """``[(name, shape)]`` of one abstract forward pass, in network order."""
  order: list[str] = []

  def run(p, x):
    out = apply(p, x)
    order.extend(out)  # dict insertion order = the order outputs were made
    return out

  shapes = jax.eval_shape(run, params, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  return [(name, tuple(shapes[name].shape)) for name in order]


def _prefix(tokens: int, grid) -> int | None:
  """``P`` when ``tokens == P + h·w`` with ``0 ≤ P ≤ MAX_PREFIX_TOKENS``."""
  prefix = tokens - grid[0] * grid[1]
  return prefix if 0 <= prefix <= MAX_PREFIX_TOKENS else None


def _is_square_map(shape) -> bool:
  return len(shape) == 4 and shape[1] == shape[2]


def infer_patch_grid(outputs, size: int) -> tuple[int, int] | None:
  """The patch grid: the first strided square map whose ``h·w`` fits a token output.

  Args:
    outputs: ``[(name, shape)]`` in network order (see ``_trace_outputs``).
    size: the input side the shapes were traced at.

  Returns:
    ``(h, w)``, or None for a network without ``[B, P + h·w, D]`` outputs.
  """
  counts = {shape[1] for _, shape in outputs if len(shape) == 3}
  for _, shape in outputs:
    if _is_square_map(shape) and shape[1] < size and any(
        _prefix(n, shape[1:3]) is not None for n in counts):
      return tuple(shape[1:3])
  return None


def _layers_from_shapes(outputs, size: int, only: Sequence[str] | None, grid):
  """``(layers, token grids)`` of the outputs that are images, token grids or vectors."""
  grids = {}
  if grid is not None:
    for name, shape in outputs:
      if len(shape) == 3 and _prefix(shape[1], grid) is not None:
        grids[name] = TokenGrid(_prefix(shape[1], grid), *grid)
  token_counts = {g.prefix + g.height * g.width for g in grids.values()}
  layers = []
  for name, shape in outputs:
    if only is not None and name not in only:
      continue
    if name in grids:
      layers.append(base.Layer(name, shape[-1], max(1, round(size / grid[0]))))
    elif _is_square_map(shape) and not token_counts & set(shape[1:3]):
      layers.append(base.Layer(name, shape[-1], max(1, round(size / shape[1]))))
    elif len(shape) == 2:
      layers.append(base.Layer(name, shape[-1], 0))
  if only is not None:
    missing = set(only) - {layer.name for layer in layers}
    if missing:
      raise base.UnknownLayerError(
          f"layers={sorted(missing)} are not [B, H, W, C], token-grid [B, N, D] "
          "or [B, C] outputs of the module; available: "
          + ", ".join(n for n, _ in outputs))
  names = {layer.name for layer in layers}
  return tuple(layers), {n: g for n, g in grids.items() if n in names}


def _runs(apply, params, size: int) -> bool:
  """Whether the abstract forward pass at ``size`` succeeds with no empty map."""
  try:
    outputs = _trace_outputs(apply, params, size)
  except Exception:  # a wrong-sized input fails inside the module: any error
    return False
  return all(0 not in shape for _, shape in outputs)


def infer_min_size(apply, params, input_size: int) -> int:
  """Smallest input side whose abstract forward pass keeps every map ≥ 1 px."""
  if not _runs(apply, params, input_size):
    raise ValueError(f"The module does not run on {input_size} px inputs; "
                     "pass the size it was trained at as input_size=.")
  lo, hi = 0, input_size  # invariant: runs(hi), not runs(lo) (size 0 never runs)
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (lo, mid) if _runs(apply, params, mid) else (mid, hi)
  return hi


def is_fixed_input_size(apply, params, input_size: int) -> bool:
  """Whether the module runs at ``input_size`` but not at ``FIXED_SIZE_PROBE`` times it.

  Learned position embeddings (a ViT) or a flattening head make a module
  accept one size only.
  """
  if not _runs(apply, params, input_size):
    raise ValueError(f"The module does not run on {input_size} px inputs; "
                     "pass the size it was trained at as input_size=.")
  return not _runs(apply, params, FIXED_SIZE_PROBE * input_size)


def _default_layer(layers: tuple[base.Layer, ...], token_layers) -> str | None:
  """A mid-network layer: the middle one of the first rule that finds any.

  1. A transformer's MLP hidden layers after their nonlinearity (Ghiasi et
     al. 2022's unit): token-grid module inputs (``"<path>:input"``, values
     computed by a function between modules) wider than the first token
     layer (the residual stream's width) — ``block{depth//2}/…/fc2:input``,
     as for the zoo's ViTs.
  2. A transformer's residual stream: the blocks' outputs, i.e. token-grid
     outputs with no token-grid ancestor in their module path whose names
     differ only by a trailing number (``block0``…, ``blocks/0``…; the
     final ``norm`` is not a block).
  3. Any other network: the middle stride-16 spatial output (GoogLeNet's
     ``mixed4c`` depth).

  ``token_layers`` are the names of the token-grid layers.
  """
  tokens = [l for l in layers if l.name in token_layers]
  if tokens:
    hidden = [l.name for l in tokens
              if l.name.endswith(INPUT_SUFFIX) and l.depth > tokens[0].depth]
    names = {l.name for l in tokens}
    stream = [l.name for l in tokens if not l.name.endswith(INPUT_SUFFIX)
              and not any(a in names for a in _ancestors(l.name))]
    stems = collections.Counter(_BLOCK_NUMBER.sub("", n) for n in stream)
    blocks = [n for n in stream if stems[_BLOCK_NUMBER.sub("", n)] > 1]
    candidates = hidden or blocks or stream or [l.name for l in tokens]
    return candidates[len(candidates) // 2]
  spatial = [l for l in layers if l.spatial]
  if not spatial:
    return None
  target = min({l.stride for l in spatial}, key=lambda s: abs(s - 16))
  candidates = [l.name for l in spatial if l.stride == target]
  return candidates[len(candidates) // 2]


def _ancestors(name: str) -> list[str]:
  """Module paths above ``name``: ``"a/b/c"`` -> ``["a", "a/b"]``."""
  parts = name.split(PATH_SEP)
  return [PATH_SEP.join(parts[:i]) for i in range(1, len(parts))]


# ---------------------------------------------------------------------------
# The adapter.

def _adapt(module, variables, prepare):
  """``(make_apply(view), params, kind, identity, native)`` for the module's kind."""
  if isinstance(module, nnx.Module):
    graphdef, params = nnx.split(module)
    native = _accepts(type(module).__call__, "layers", "perturb")
    return (lambda view: _nnx_apply(graphdef, prepare, native, view),
            params, "nnx", graphdef, native)
  if isinstance(module, nn.Module):
    native = _accepts(module.__call__, "layers", "perturb")
    if native:
      return lambda view: _native_apply(module, prepare), variables, "linen", module, True
    return (lambda view: _linen_apply(module, prepare, view),
            variables, "linen", module, False)
  raise TypeError(f"from_flax takes a flax.linen.Module or an nnx.Module, got "
                  f"{type(module).__name__}; wrap other models in "
                  "atlasjax.models.base.Model directly.")


def from_flax(module, variables=None, *, layers: Sequence[str] | None = None,
              input_convention: Callable | None = None, name: str | None = None,
              input_size: int = 224, min_size: int | None = None,
              relu_twins: Sequence[tuple[str, str]] = (),
              perturbable: Sequence[str] | None | str = "auto",
              default_layer: str | None = None, cam_layer: str | None = None,
              classifier: Sequence[str] | None = None,
              metadata_params: Any = None,
              token_grid: tuple[int, int] | None = None,
              fixed_input_size: bool | None = None) -> tuple[base.Model, Any]:
  """Wraps a Flax linen module (with its variables) or an NNX module.

  Length: most of it is the argument list below; the body is ~30 lines (kind,
  view, metadata, model).

  Args:
    module: a ``flax.linen.Module`` or an ``nnx.Module`` instance.
    variables: the linen module's variables (``{"params": ...}``); ignored for
      NNX (the module holds its state).
    layers: expose only these outputs (default: every image, token-grid and
      vector output, module inputs ``"<path>:input"`` included).
    input_convention: ``images in [0, 1] -> module input``, e.g.
      :class:`Normalize` (default: the images as they are).
    name: the model's name (default: the module's class name).
    input_size: the side length the module was trained at.
    min_size: the smallest accepted side (default: inferred; 1 for a
      fixed-size module, whose ``apply`` resamples).
    relu_twins: ``(layer, pre_relu_layer)`` pairs with
      ``layer == relu(pre_relu_layer)``, for ReLU gradient redirection.
    perturbable: outputs ``perturb`` accepts; ``"auto"``: every output for
      linen/NNX modules (interception perturbs any of them), whatever the module
      declares for native ones (``None`` = let the module check).
    default_layer, cam_layer, classifier: see :class:`~atlasjax.models.base.Model`.
      ``default_layer`` defaults to a mid-network layer: on a transformer the
      middle block's MLP hidden layer after its nonlinearity (else the middle
      block's output), otherwise the middle stride-16 spatial output.
    metadata_params: params to trace the metadata with when ``variables`` is
      None (native modules registered before their weights are loaded).
    token_grid: ``(h, w)``, the patch grid of a transformer's ``[B, P + h·w, D]``
      token outputs (default: inferred from its first strided square output,
      the patch embedding); needed only where patches are embedded without
      a convolution. Native modules lay out their own outputs.
    fixed_input_size: whether the module accepts only ``input_size`` inputs
      (default: detected for linen/NNX modules, False for native ones); if
      so, ``apply`` resizes every other size to ``input_size``.

  Returns:
    ``(model, params)``: ``params`` is ``variables`` for linen, the split
    ``nnx.State`` for NNX.
  """
  prepare = input_convention if input_convention is not None else (lambda x: x)
  make_apply, params, kind, identity, native = _adapt(module, variables, prepare)
  raw = make_apply(RAW)
  trace_params = params if params is not None else metadata_params
  if trace_params is None:
    trace_params = jax.eval_shape(
        lambda: module.init(jax.random.PRNGKey(0),
                            jnp.zeros((1, input_size, input_size, 3))))
  outputs = _trace_outputs(raw, trace_params, input_size)
  grid = None if native else (
      tuple(token_grid) if token_grid else infer_patch_grid(outputs, input_size))
  model_layers, grids = _layers_from_shapes(outputs, input_size, layers, grid)
  if fixed_input_size is None:
    fixed_input_size = not native and is_fixed_input_size(raw, trace_params, input_size)
  if min_size is None:
    min_size = 1 if fixed_input_size else infer_min_size(raw, trace_params, input_size)
  apply = make_apply(_View(tuple(l.name for l in model_layers), tuple(grids.items())))
  if fixed_input_size:
    apply = _resampling(apply, input_size)
  if perturbable == "auto":
    perturbable = None if native else tuple(l.name for l in model_layers)
  key: Hashable = (kind, identity, native, tuple(layers) if layers else None,
                   input_convention, grid)
  model = base.Model(
      name=name or type(module).__name__, apply=apply, layers=model_layers,
      input_size=input_size, min_size=min_size, fixed_input_size=fixed_input_size,
      relu_twins=tuple(tuple(p) for p in relu_twins),
      perturbable=None if perturbable is None else tuple(perturbable),
      default_layer=default_layer or _default_layer(model_layers, grids),
      cam_layer=cam_layer, classifier=tuple(classifier) if classifier else None,
      key=key)
  return model, params
