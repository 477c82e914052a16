"""The small protocol every atlasjax model satisfies.

A model is plain data plus one pure function:

    model.apply(params, images, layers=None) -> dict[str, Array]

``images`` are NHWC float32 RGB in [0, 1]; the model converts them to its own
input convention internally. ``layers`` (a tuple of names, static under ``jit``)
limits the computation: the model stops once every requested output exists.
``model.layers`` is a tuple of :class:`Layer` records (name, depth, stride from
the input) that users and the rest of the library query; nothing is discovered
by running the network or hooking into it.

Models may also accept ``perturb``, a dict mapping output names to arrays added
to those outputs before the rest of the network reads them: a pure way (no
hooks) to linearise the network downstream of a layer with ``jax.jvp``, which
the atlas attributions need. ``model.perturbable`` *declares* which outputs
``perturb`` accepts (``None``: any output; ``()``: none), so a model that cannot
be perturbed raises a clear error when attributions are requested instead of
silently giving zeros.

ReLU gradient redirection (Lucid's trick for the first optimisation steps) is
declared the same way: ``model.relu_twins`` lists ``(layer, pre_relu_layer)``
pairs with ``layer == relu(pre_relu_layer)``; nothing is inferred from names.

Compiled programs are cached by the model (a hashable value): ``Model.key``
identifies the computation. Models built from a Flax module by
:func:`atlasjax.models.from_flax` use the module's own (structural) equality,
so rebuilding the same model in a new notebook cell does not recompile.

Most models come from a Flax module through :func:`atlasjax.models.from_flax`;
anything else that fits this protocol (see ``tests/toy_model.py`` for a tiny
hand-written CNN) works with the renderer, the atlas pipeline and the classic
visualizations as well.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable, Mapping, Sequence

import jax

from atlasjax import compilation_cache

# Every program atlasjax compiles runs a model: turning the persistent cache
# on here covers renders, collection and the scripts (see compilation_cache).
compilation_cache.configure()

Params = Any
Activations = Mapping[str, jax.Array]
ApplyFn = Callable[..., dict]


class UnknownLayerError(KeyError):
  """A layer name that the model does not have."""

  def __str__(self) -> str:  # KeyError would repr() the message.
    return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class Layer:
  """Metadata of one named model output.

  Attributes:
    name: output name, e.g. ``"mixed4c"`` or ``"mixed4c_pre_relu"``.
    depth: number of channels (or classes for ``logits``/``probs``).
    stride: total spatial stride from the input; 0 for outputs without
      spatial extent (``avgpool``, ``logits``, ``probs``). A transformer's
      token layers, laid out on the patch grid, have ``input_size / h``.
  """

  name: str
  depth: int
  stride: int

  @property
  def spatial(self) -> bool:
    """Whether the output is a spatial ``[B, H, W, C]`` map (stride > 0)."""
    return self.stride > 0


class NotPerturbableError(ValueError):
  """An output that the model's ``perturb`` argument does not accept."""


# Layers whose stride from the input is at most this use the "early layer"
# defaults (the paper's mixed3 UMAP settings); deeper ones the mixed4/5 ones.
EARLY_LAYER_MAX_STRIDE = 8


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
  """A vision model as data: a pure ``apply`` and its layer metadata.

  Attributes:
    name: identifier, e.g. ``"bvlc_googlenet"``.
    apply: ``(params, images, layers=None, perturb=None) -> dict[str, Array]``.
    layers: metadata of every output ``apply`` can return, in network order.
    input_size: the side length the model was trained at.
    min_size: the smallest input side it accepts.
    fixed_input_size: the network itself runs only at ``input_size`` (learned
      position embeddings); ``apply`` resamples every other size to it, so
      callers may still pass any size of at least ``min_size``.
    input_range: value range of the images ``apply`` expects.
    relu_twins: declared ``(layer, pre_relu_layer)`` pairs where
      ``layer == relu(pre_relu_layer)``; the renderer's ReLU redirection uses
      exactly these.
    perturbable: output names ``apply``'s ``perturb`` accepts; ``None`` means
      any output in ``layers``, ``()`` that the model cannot be perturbed.
    default_layer: the layer scripts use when none is given (an atlas layer).
    cam_layer: the last spatial layer before global pooling and the linear
      classifier (CAM reads it); ``None`` if the model has no such head.
    classifier: path of the linear head's ``{"kernel", "bias"}`` in params.
    key: what identifies the computation for compile caches (``apply`` is
      excluded from equality when a key is given); ``None`` means ``apply``
      itself.
  """

  name: str
  apply: ApplyFn = dataclasses.field(compare=False)
  layers: tuple[Layer, ...] = ()
  input_size: int = 224
  min_size: int = 1
  fixed_input_size: bool = False
  input_range: tuple[float, float] = (0.0, 1.0)
  relu_twins: tuple[tuple[str, str], ...] = ()
  perturbable: tuple[str, ...] | None = ()
  default_layer: str | None = None
  cam_layer: str | None = None
  classifier: tuple[str, ...] | None = None
  key: Hashable = None

  def _identity(self) -> tuple:
    # ``key`` if given, else ``apply`` itself: so ``dataclasses.replace(model,
    # apply=...)`` on a hand-built model is a different model for the caches.
    fields = tuple(getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name not in ("apply", "key"))
    return fields + (self.key if self.key is not None else ("apply", self.apply),)

  def __eq__(self, other) -> bool:
    return isinstance(other, Model) and self._identity() == other._identity()

  def __hash__(self) -> int:
    return hash(self._identity())

  def __post_init__(self):
    names = set(self.layer_names)
    for layer, twin in self.relu_twins:
      if layer not in names or twin not in names:
        raise ValueError(f"relu_twins names unknown layers: {(layer, twin)}")

  @property
  def layer_names(self) -> tuple[str, ...]:
    """Every output name, in network order."""
    return tuple(layer.name for layer in self.layers)

  def layer(self, name: str) -> Layer:
    """Metadata of ``name``; raises :class:`UnknownLayerError` listing valid names."""
    for layer in self.layers:
      if layer.name == name:
        return layer
    raise UnknownLayerError(
        f"Unknown layer {name!r} for model {self.name!r}. Valid layers: "
        + ", ".join(self.layer_names))

  def check_layers(self, names: Sequence[str]) -> tuple[str, ...]:
    """Validates ``names`` and returns them as a tuple (hashable, for ``jit``)."""
    if isinstance(names, str):
      names = (names,)
    for name in names:
      self.layer(name)
    return tuple(names)

  def index(self, name: str) -> int:
    """Position of ``name`` in network order (deeper layers have larger index)."""
    return self.layer_names.index(self.layer(name).name)

  def deepest(self, names: Sequence[str]) -> str:
    """The layer among ``names`` computed last."""
    return max(self.check_layers(names), key=self.index)

  def pre_relu(self, name: str) -> str | None:
    """The declared pre-activation of ``name`` (``name == relu(it)``), if any."""
    return dict(self.relu_twins).get(name)

  def check_perturbable(self, names: Sequence[str]) -> tuple[str, ...]:
    """Validates that ``perturb`` accepts ``names``; a clear error otherwise."""
    names = self.check_layers(names)
    if self.perturbable is None:
      return names
    if not self.perturbable:
      raise NotPerturbableError(
          f"Model {self.name!r} cannot be perturbed, which attributions and "
          "layer gradients need; build it with atlasjax.models.from_flax (which "
          "perturbs any module output) or collect with attributions=False.")
    bad = [n for n in names if n not in self.perturbable]
    if bad:
      raise NotPerturbableError(
          f"Model {self.name!r} cannot perturb {bad}: nothing downstream reads "
          "them as they are. Perturbable outputs: " + ", ".join(self.perturbable))
    return names

  def is_early(self, name: str) -> bool:
    """Whether ``name`` is an early (fine-stride) layer, e.g. GoogLeNet's mixed3."""
    return 0 < self.layer(name).stride <= EARLY_LAYER_MAX_STRIDE

  def classifier_params(self, params) -> dict:
    """The ``{"kernel": [C, classes], "bias": [classes]}`` of the linear head."""
    if self.classifier is None:
      raise ValueError(f"Model {self.name!r} declares no linear classifier head.")
    node = params
    for part in self.classifier:
      node = node[part]
    return node
