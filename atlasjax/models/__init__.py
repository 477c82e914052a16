"""Models: Flax modules seen through one protocol (see :mod:`.base`).

``get(name)`` is the :class:`Model` (pure ``apply`` + inferred layer metadata)
of a registered network, ``load(name, data)`` also returns its verified
weights as a Flax variables tree, and :func:`from_flax` adapts any other linen
or NNX module the same way the registered ones are adapted.

The Vision Transformers (``vit_ti16`` … ``vit_l32``, the SigLIP image towers
``siglip_b16`` … ``siglip_so400m14``, PaliGemma's encoder, :mod:`.vit`) ship
no weights: ``load("vit_b16", weights=PATH)`` reads a big_vision/AugReg/SigLIP
``.npz``; ``load("big_vision", weights=PATH)`` reads any big_vision ViT and
infers its architecture from the file's shapes (one logged line says what it
found); ``vit_distilled`` reads the one ``bench/distill_vit.py`` writes to
the cache.
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
  # (data root, weights file) -> variables; ``weights`` is None unless given.
  load_params: Callable[[os.PathLike | str | None, os.PathLike | str | None],
                        object]


class WeightsFlagError(ValueError):
  """``weights=`` given for a model whose weights come from elsewhere."""


def _no_weights_file(name, data, weights_file, load):
  if weights_file is not None:
    raise WeightsFlagError(
        f"weights={weights_file}: {name} loads its own verified weights (from "
        "--data / the cache); --weights applies to the ViT models only.")
  return load(data)


def _googlenet_entry(spec):
  return Entry(build=lambda: inception_v1.build(spec),
               load_params=lambda data, file: _no_weights_file(
                   spec.name, data, file, lambda d: weights.load_params(d, spec)))


def _efficientnet_entry(name):
  def module():
    return importlib.import_module("atlasjax.models.efficientnet_lite")
  return Entry(build=lambda: module().build(name),
               load_params=lambda data, file: _no_weights_file(
                   name, data, file, lambda d: module().load_variables(name)))


def _vit_module():
  return importlib.import_module("atlasjax.models.vit")


def _vit_entry(spec_name: str, default_file=None):
  """A ViT: weights only from ``weights=`` (or ``default_file()``), never fetched."""
  module = _vit_module

  def spec():
    return module().named_spec(spec_name)

  def load_params(data, file):
    del data  # no ViT weights are published where atlasjax can fetch them
    if file is None and default_file is not None:
      file = default_file()
    return module().load_variables(spec(), file)
  return Entry(build=lambda: module().build(spec()), load_params=load_params)


def _distilled_file():
  from atlasjax.models import vit  # pylint: disable=import-outside-toplevel
  path = vit.distilled_dir() / vit.DISTILLED_FILE
  if not path.is_file():
    raise vit.WeightsError(
        f"{path} not found: train it with `nice -n 5 python "
        "bench/distill_vit.py` (about 30 min on a 2-core CPU) or pass "
        "weights=PATH (--weights=PATH).")
  return path


# Registry names of the ViT zoo: vit_{ti,s,b,l}{8,16,32} (see vit.SPECS).
VIT_MODELS = tuple(f"vit_{size}{patch}" for size in ("ti", "s", "b", "l")
                   for patch in (8, 16, 32))
# Shortcuts for the public image towers (vit.TOWER_SPECS; checked equal in
# tests/models/test_vit_siglip.py, kept literal so the registry imports no ViT).
TOWER_MODELS = (
    "siglip_b16", "siglip_b16_256", "siglip_b16_384", "siglip_b16_512",
    "siglip_b32_256", "siglip_l16_256", "siglip_l16_384", "siglip_l16_512",
    "siglip_so400m14", "siglip_so400m14_384", "siglip_so400m16_256",
    "siglip_so400m16_384", "siglip_so400m16_512", "siglip_gopt16_256",
    "siglip_gopt16_384", "paligemma_224", "paligemma_448")
DISTILLED_VIT = "vit_distilled"
# Any big_vision ViT: the architecture is read from the weights file.
BIG_VISION = "big_vision"


def _big_vision_spec(weights_file):
  """The file's ViT spec (headers only), its one-line description logged."""
  from atlasjax import progress  # pylint: disable=import-outside-toplevel
  spec, line = _vit_module().spec_from_file(weights_file, BIG_VISION)
  progress.note(line)
  return spec


@functools.lru_cache(maxsize=8)
def _vit_model(spec) -> Model:
  return _vit_module().build(spec)


def _big_vision_entry():
  """Entry of ``big_vision``: get/load build the model the file describes."""
  def build():
    raise _vit_module().WeightsError(
        f"{BIG_VISION} reads its architecture from its weights file: "
        f"models.get('{BIG_VISION}', weights=FILE) / models.load('{BIG_VISION}', "
        "weights=FILE) (scripts: --weights=FILE).")

  def load_params(data, file):
    del data
    return _vit_module().load_variables(_big_vision_spec(file), file)
  return Entry(build=build, load_params=load_params)

_REGISTRY: dict[str, Entry] = {
    **{name: _googlenet_entry(spec) for name, spec in inception_v1.SPECS.items()},
    "efficientnet_lite0": _efficientnet_entry("efficientnet_lite0"),
    **{name: _vit_entry(name) for name in VIT_MODELS + TOWER_MODELS},
    DISTILLED_VIT: _vit_entry(DISTILLED_VIT, _distilled_file),
    BIG_VISION: _big_vision_entry(),
}


def available() -> tuple[str, ...]:
  """Names of the registered models, for ``get`` and ``load``."""
  return tuple(_REGISTRY)


def _entry(name: str) -> Entry:
  if name not in _REGISTRY:
    raise UnknownModelError(
        f"Unknown model {name!r}. Available: {', '.join(available())}")
  return _REGISTRY[name]


def get(name: str = DEFAULT_MODEL, weights: os.PathLike | str | None = None) -> Model:
  """The :class:`Model` (apply + metadata) for ``name``, without weights.

  ``weights`` matters only for ``big_vision``, whose architecture is read
  from the file's shapes (no array is read).
  """
  if name == BIG_VISION and weights is not None:
    return _vit_model(_big_vision_spec(weights))
  return _registered_model(name)


@functools.lru_cache(maxsize=None)
def _registered_model(name: str) -> Model:
  return _entry(name).build()


def load(name: str = DEFAULT_MODEL, data: os.PathLike | str | None = None,
         weights: os.PathLike | str | None = None):
  """``(model, params)`` with the model's weights.

  GoogLeNet and EfficientNet load their verified published weights (``data``:
  the data root); a ViT loads the big_vision/AugReg/SigLIP ``.npz`` named by
  ``weights`` (required, except for ``vit_distilled``, whose default is the
  file ``bench/distill_vit.py`` caches); ``big_vision`` builds the ViT the
  file's shapes describe and logs one line saying what it found.
  """
  entry = _entry(name)
  if name == BIG_VISION:
    spec = _big_vision_spec(weights)
    return _vit_model(spec), _vit_module().load_variables(spec, weights)
  params = entry.load_params(data, weights)  # a bad file fails before tracing
  return get(name), params


__all__ = ["Layer", "Model", "NotPerturbableError", "UnknownLayerError",
           "UnknownModelError", "WeightsFlagError", "Normalize", "IMAGENET_NORMALIZE", "available", "BIG_VISION",
           "from_flax", "get", "load", "DEFAULT_MODEL"]
