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

``layers=`` stops the forward pass as soon as every requested output exists
(the adapter ends the trace early), so a feature visualization of an early
layer never computes the rest of the network.

Layer metadata (channels, stride from the input) comes from ``jax.eval_shape``
of one forward pass at ``input_size``; outputs that are not ``[B, H, W, C]`` or
``[B, C]`` arrays are left out. ``min_size`` is, unless declared, the smallest
input side for which that abstract forward pass still succeeds with every
spatial output at least one pixel.

Compiled programs are cached by the model: its ``key`` holds the module itself
(linen modules compare by their fields) or the NNX graph definition, plus the
adapter's options, so rebuilding the same model in a new notebook cell finds the
programs compiled before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
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


class _Done(Exception):
  """Ends a forward pass once every requested output exists."""


class _Recorder:
  """Collects named outputs during one call and adds perturbations to them."""

  def __init__(self, wanted, perturb):
    self.wanted = wanted
    self.perturb = perturb or {}
    self.acts: dict[str, jax.Array] = {}

  def record(self, name: str, out):
    if name in self.acts or not _is_array(out):
      return out
    if name in self.perturb:
      out = out + self.perturb[name]
    self.acts[name] = out
    if self.wanted is not None and self.wanted <= self.acts.keys():
      raise _Done
    return out

  def finish(self, out):
    if isinstance(out, dict):
      for name, value in out.items():
        self.record(str(name), value)
    else:
      self.record(ROOT_LOGITS if _is_array(out) and out.ndim == 2 else ROOT_OUTPUT, out)


def _is_array(x) -> bool:
  return isinstance(x, (jax.Array, np.ndarray)) or hasattr(x, "aval")


def _accepts(fn, *names) -> bool:
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False
  return all(n in params for n in names)


def _select(acts: dict, wanted) -> dict:
  if wanted is None:
    return acts
  return {name: acts[name] for name in wanted}


def _wanted(layers):
  if layers is None:
    return None
  return {layers} if isinstance(layers, str) else set(layers)


# ---------------------------------------------------------------------------
# The three kinds of module.

def _native_apply(module: nn.Module, prepare):
  def apply(params, images, layers=None, perturb=None):
    return module.apply(params, prepare(images), layers=layers, perturb=perturb)
  return apply


def _linen_apply(module: nn.Module, prepare):
  def apply(params, images, layers=None, perturb=None):
    recorder = _Recorder(_wanted(layers), perturb)

    def interceptor(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if context.method_name != "__call__" or not context.module.path:
        return out
      return recorder.record(PATH_SEP.join(context.module.path), out)

    try:
      with nn.intercept_methods(interceptor):
        out = module.apply(params, prepare(images))
      recorder.finish(out)
    except _Done:
      pass
    return _select(recorder.acts, recorder.wanted)
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
        out = __inner(self, *args, **kwargs)
        name = paths.get(id(self))
        return out if name is None else recorder.record(name, out)

      cls.__call__ = wrapped
  try:
    yield
  finally:
    for cls, original in originals.items():
      if original is None:
        del cls.__call__
      else:
        cls.__call__ = original


def _nnx_apply(graphdef, prepare, native: bool):
  def apply(params, images, layers=None, perturb=None):
    module = nnx.merge(graphdef, params)
    if hasattr(module, "eval"):
      module.eval()
    if native:
      return module(prepare(images), layers=layers, perturb=perturb)
    recorder = _Recorder(_wanted(layers), perturb)
    try:
      with _nnx_interception(module, recorder):
        out = module(prepare(images))
      recorder.finish(out)
    except _Done:
      pass
    return _select(recorder.acts, recorder.wanted)
  return apply


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


def _layers_from_shapes(outputs, size: int, only: Sequence[str] | None):
  layers = []
  for name, shape in outputs:
    if only is not None and name not in only:
      continue
    if len(shape) == 4:
      layers.append(base.Layer(name, shape[-1], max(1, round(size / shape[1]))))
    elif len(shape) == 2:
      layers.append(base.Layer(name, shape[-1], 0))
  if only is not None:
    missing = set(only) - {layer.name for layer in layers}
    if missing:
      raise base.UnknownLayerError(
          f"layers={sorted(missing)} are not [B, H, W, C] or [B, C] outputs of "
          "the module; available: " + ", ".join(n for n, _ in outputs))
  return tuple(layers)


def infer_min_size(apply, params, input_size: int) -> int:
  """Smallest input side whose abstract forward pass keeps every map ≥ 1 px."""
  def ok(size):
    try:
      outputs = _trace_outputs(apply, params, size)
    except Exception:  # a too-small input fails inside the module: any error
      return False
    return all(0 not in shape for _, shape in outputs)

  if not ok(input_size):
    raise ValueError(f"The module does not run on {input_size} px inputs; "
                     "pass the size it was trained at as input_size=.")
  lo, hi = 0, input_size  # invariant: ok(hi), not ok(lo) (size 0 never runs)
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (lo, mid) if ok(mid) else (mid, hi)
  return hi


def _default_layer(layers: tuple[base.Layer, ...]) -> str | None:
  """A mid-network spatial layer: the middle one of the stride-16 outputs."""
  spatial = [l for l in layers if l.spatial]
  if not spatial:
    return None
  target = min({l.stride for l in spatial}, key=lambda s: abs(s - 16))
  candidates = [l.name for l in spatial if l.stride == target]
  return candidates[len(candidates) // 2]


# ---------------------------------------------------------------------------
# The adapter.

def from_flax(module, variables=None, *, layers: Sequence[str] | None = None,
              input_convention: Callable | None = None, name: str | None = None,
              input_size: int = 224, min_size: int | None = None,
              relu_twins: Sequence[tuple[str, str]] = (),
              perturbable: Sequence[str] | None | str = "auto",
              default_layer: str | None = None, cam_layer: str | None = None,
              classifier: Sequence[str] | None = None,
              metadata_params: Any = None) -> tuple[base.Model, Any]:
  """Wraps a Flax linen module (with its variables) or an NNX module.

  Args:
    module: a ``flax.linen.Module`` or an ``nnx.Module`` instance.
    variables: the linen module's variables (``{"params": ...}``); ignored for
      NNX (the module holds its state).
    layers: expose only these outputs (default: every array output).
    input_convention: ``images in [0, 1] -> module input``, e.g.
      :class:`Normalize` (default: the images as they are).
    name: the model's name (default: the module's class name).
    input_size: the side length the module was trained at.
    min_size: the smallest accepted side (default: inferred).
    relu_twins: ``(layer, pre_relu_layer)`` pairs with
      ``layer == relu(pre_relu_layer)``, for ReLU gradient redirection.
    perturbable: outputs ``perturb`` accepts; ``"auto"``: every output for
      linen/NNX modules (interception perturbs any of them), whatever the module
      declares for native ones (``None`` = let the module check).
    default_layer, cam_layer, classifier: see :class:`~atlasjax.models.base.Model`.
    metadata_params: params to trace the metadata with when ``variables`` is
      None (native modules registered before their weights are loaded).

  Returns:
    ``(model, params)``: ``params`` is ``variables`` for linen, the split
    ``nnx.State`` for NNX.
  """
  prepare = input_convention if input_convention is not None else (lambda x: x)
  if isinstance(module, nnx.Module):
    graphdef, params = nnx.split(module)
    native = _accepts(type(module).__call__, "layers", "perturb")
    apply = _nnx_apply(graphdef, prepare, native)
    kind, identity = "nnx", graphdef
  elif isinstance(module, nn.Module):
    params = variables
    native = _accepts(module.__call__, "layers", "perturb")
    apply = (_native_apply if native else _linen_apply)(module, prepare)
    kind, identity = "linen", module
  else:
    raise TypeError(f"from_flax takes a flax.linen.Module or an nnx.Module, got "
                    f"{type(module).__name__}; wrap other models in "
                    "atlasjax.models.base.Model directly.")
  trace_params = params if params is not None else metadata_params
  if trace_params is None:
    trace_params = jax.eval_shape(
        lambda: module.init(jax.random.PRNGKey(0),
                            jnp.zeros((1, input_size, input_size, 3))))
  outputs = _trace_outputs(apply, trace_params, input_size)
  model_layers = _layers_from_shapes(outputs, input_size, layers)
  if min_size is None:
    min_size = infer_min_size(apply, trace_params, input_size)
  if perturbable == "auto":
    perturbable = None if native else tuple(l.name for l in model_layers)
  key: Hashable = (kind, identity, native, tuple(layers) if layers else None,
                   input_convention)
  model = base.Model(
      name=name or type(module).__name__, apply=apply, layers=model_layers,
      input_size=input_size, min_size=min_size,
      relu_twins=tuple(tuple(p) for p in relu_twins),
      perturbable=None if perturbable is None else tuple(perturbable),
      default_layer=default_layer or _default_layer(model_layers),
      cam_layer=cam_layer, classifier=tuple(classifier) if classifier else None,
      key=key)
  return model, params
