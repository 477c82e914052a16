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
the atlas attributions need. A model without it can still be visualized and
laid out; only attribution collection requires it.

Anything that fits this protocol (see ``tests/conftest.py`` for a tiny CNN)
works with the renderer, the atlas pipeline and the classic visualizations.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax

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
      spatial extent (``avgpool``, ``logits``, ``probs``).
  """

  name: str
  depth: int
  stride: int

  @property
  def spatial(self) -> bool:
    return self.stride > 0


@dataclasses.dataclass(frozen=True)
class Model:
  """A vision model as data: a pure ``apply`` and its layer metadata.

  Attributes:
    name: identifier, e.g. ``"bvlc_googlenet"``.
    apply: ``(params, images, layers=None) -> dict[str, Array]``.
    layers: metadata of every output ``apply`` can return, in network order.
    input_size: the side length the model was trained at.
    min_size: the smallest input side it accepts.
    input_range: value range of the images ``apply`` expects.
  """

  name: str
  apply: ApplyFn
  layers: tuple[Layer, ...]
  input_size: int = 224
  min_size: int = 64
  input_range: tuple[float, float] = (0.0, 1.0)

  @property
  def layer_names(self) -> tuple[str, ...]:
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
