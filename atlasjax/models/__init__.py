"""Models: pure ``apply`` functions plus layer metadata (see :mod:`.base`)."""

from __future__ import annotations

import functools
import os

from atlasjax.models import inception_v1
from atlasjax.models import weights
from atlasjax.models.base import Layer, Model, UnknownLayerError

DEFAULT_MODEL = "bvlc_googlenet"


class UnknownModelError(KeyError):

  def __str__(self) -> str:
    return str(self.args[0])


def available() -> tuple[str, ...]:
  return tuple(inception_v1.SPECS)


@functools.lru_cache(maxsize=None)
def get(name: str = DEFAULT_MODEL) -> Model:
  """The :class:`Model` (apply + metadata) for ``name``, without weights."""
  if name not in inception_v1.SPECS:
    raise UnknownModelError(
        f"Unknown model {name!r}. Available: {', '.join(available())}")
  return inception_v1.build(inception_v1.SPECS[name])


def load(name: str = DEFAULT_MODEL, data: os.PathLike | str | None = None):
  """``(model, params)`` with the verified published weights."""
  model = get(name)
  return model, weights.load_params(data, inception_v1.SPECS[name])


__all__ = ["Layer", "Model", "UnknownLayerError", "UnknownModelError",
           "available", "get", "load", "DEFAULT_MODEL"]
