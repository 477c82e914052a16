"""Models: Flax modules seen through one protocol (see :mod:`.base`).

``get(name)`` is the :class:`Model` (pure ``apply`` + inferred layer metadata)
of a registered network, ``load(name, data)`` also returns its verified
weights as a Flax variables tree, and :func:`from_flax` adapts any other linen
or NNX module the same way the registered ones are adapted.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from typing import Callable

from atlasjax.models import base
from atlasjax.models import inception_v1
from atlasjax.models import weights
from atlasjax.models.base import Layer, Model, NotPerturbableError, UnknownLayerError
from atlasjax.models.flax_adapter import IMAGENET_NORMALIZE, Normalize, from_flax

DEFAULT_MODEL = "bvlc_googlenet"


class UnknownModelError(KeyError):
  """A model name that is not registered (the message lists those that are)."""

  def __str__(self) -> str:
    return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class Entry:
  """A registered network: how to build its Model and load its weights."""
  build: Callable[[], Model]
  load_params: Callable[[os.PathLike | str | None], object]


def _googlenet_entry(spec):
  return Entry(build=lambda: inception_v1.build(spec),
               load_params=lambda data: weights.load_params(data, spec))


def _efficientnet_entry(name):
  def module():
    return importlib.import_module("atlasjax.models.efficientnet_lite")
  return Entry(build=lambda: module().build(name),
               load_params=lambda data: module().load_variables(name))


_REGISTRY: dict[str, Entry] = {
    **{name: _googlenet_entry(spec) for name, spec in inception_v1.SPECS.items()},
    "efficientnet_lite0": _efficientnet_entry("efficientnet_lite0"),
}


def available() -> tuple[str, ...]:
  """Names of the registered models, for ``get`` and ``load``."""
  return tuple(_REGISTRY)


def _entry(name: str) -> Entry:
  if name not in _REGISTRY:
    raise UnknownModelError(
        f"Unknown model {name!r}. Available: {', '.join(available())}")
  return _REGISTRY[name]


@functools.lru_cache(maxsize=None)
def get(name: str = DEFAULT_MODEL) -> Model:
  """The :class:`Model` (apply + metadata) for ``name``, without weights."""
  return _entry(name).build()


def load(name: str = DEFAULT_MODEL, data: os.PathLike | str | None = None):
  """``(model, params)`` with the verified published weights."""
  entry = _entry(name)
  return get(name), entry.load_params(data)


__all__ = ["Layer", "Model", "NotPerturbableError", "UnknownLayerError",
           "UnknownModelError", "Normalize", "IMAGENET_NORMALIZE", "available",
           "from_flax", "get", "load", "DEFAULT_MODEL"]
