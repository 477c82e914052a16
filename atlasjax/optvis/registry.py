"""Named custom pieces: parameterizations, transforms and objective families.

A researcher's own image parameterization, transform or objective family goes
everywhere a built-in one goes by *name*: register it once, then
``RenderConfig(param="mine")``, ``RenderConfig(transforms="mine")`` and the
scripts' ``--param=mine`` / ``--transforms=mine`` / ``--objective=mine`` use it
exactly like ``"fft"`` or ``"standard"``::

  from atlasjax.optvis import registry

  def my_param(size, batch, *, decorrelate, alpha):   # -> ImageParam
    ...
  registry.register_param("mine", my_param)

A new process (an experiment script) has not run the code that registered a
name, so wherever a name is accepted an import path is accepted too:
``"package.module:attribute"`` imports ``package.module`` and takes
``attribute`` — a factory of the right kind (or, for parameterizations and
transforms, a module that registers names when imported: ``"mylab.pieces:"``
imports it and then looks the name up). The contracts:

* parameterization: ``factory(size, batch, *, decorrelate, alpha) ->``
  :class:`~atlasjax.optvis.param.ImageParam` (an ``(init, to_rgb)`` pair);
* transforms: ``factory(size, *, alpha) ->`` a transform
  ``(key, image [H, W, C]) -> image`` (static output shape);
* objective family: ``factory(layer, **kwargs) -> (arg -> Objective)``.

The registry is keyed by name only; what a name renders is decided by the
factory's return value, which the renderer keys by value/structure, so
re-registering a name with the same code does not recompile anything.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

# Names the built-in code paths understand (param.KINDS, transform.PRESETS and
# the atlas objective forms); kept here as strings so that this module imports
# nothing heavy and param/transform can import it.
BUILTIN_PARAMS = ("fft", "pixel", "laplacian", "cppn", "maco")
BUILTIN_TRANSFORMS = ("standard", "distill2017", "atlas", "atlas_notebook",
                      "maco", "none")
# Separates a module from an attribute in an import path.
IMPORT_SEPARATOR = ":"

_PARAMS: dict[str, Callable[..., Any]] = {}
_TRANSFORMS: dict[str, Callable[..., Any]] = {}
_OBJECTIVES: dict[str, Callable[..., Any]] = {}
_KINDS = {"param": (_PARAMS, BUILTIN_PARAMS),
          "transforms": (_TRANSFORMS, BUILTIN_TRANSFORMS),
          "objective": (_OBJECTIVES, ())}


class RegistryError(ValueError):
  """An unknown name or an import path that does not resolve (one line)."""


def _register(kind: str, name: str, factory: Callable[..., Any]) -> None:
  table, builtins = _KINDS[kind]
  if not isinstance(name, str) or not name or IMPORT_SEPARATOR in name:
    raise RegistryError(f"register_{kind}: the name must be a non-empty string "
                        f"without {IMPORT_SEPARATOR!r}; got {name!r}")
  if name in builtins:
    raise RegistryError(f"register_{kind}: {name!r} is a built-in {kind}; "
                        "choose another name")
  if not callable(factory):
    raise RegistryError(f"register_{kind}({name!r}, …): the factory must be "
                        f"callable; got {type(factory).__name__}")
  table[name] = factory


def register_param(name: str, factory: Callable[..., Any]) -> None:
  """Registers ``factory(size, batch, *, decorrelate, alpha) -> ImageParam``."""
  _register("param", name, factory)


def register_transforms(name: str, factory: Callable[..., Any]) -> None:
  """Registers ``factory(size, *, alpha) -> Transform``."""
  _register("transforms", name, factory)


def register_objective(name: str, factory: Callable[..., Any]) -> None:
  """Registers ``factory(layer, **kwargs) -> (arg -> Objective)``."""
  _register("objective", name, factory)


def param_names() -> tuple[str, ...]:
  """Built-in and registered parameterization names."""
  return BUILTIN_PARAMS + tuple(sorted(_PARAMS))


def transform_names() -> tuple[str, ...]:
  """Built-in and registered transforms names."""
  return BUILTIN_TRANSFORMS + tuple(sorted(_TRANSFORMS))


def objective_names() -> tuple[str, ...]:
  """Registered objective family names."""
  return tuple(sorted(_OBJECTIVES))


def is_import_path(spec: str) -> bool:
  """Whether ``spec`` is ``"package.module:attribute"`` rather than a name."""
  return isinstance(spec, str) and IMPORT_SEPARATOR in spec


def _import(kind: str, spec: str) -> Any:
  """The object an import path names (a module when the attribute is empty)."""
  module_name, _, attr = spec.partition(IMPORT_SEPARATOR)
  try:
    obj = importlib.import_module(module_name)
  except ImportError as e:
    raise RegistryError(f"{kind} {spec!r}: cannot import {module_name!r} ({e}); "
                        "put the module on PYTHONPATH or install it") from None
  for part in filter(None, attr.split(".")):
    if not hasattr(obj, part):
      raise RegistryError(f"{kind} {spec!r}: {module_name} has no attribute "
                          f"{attr!r}")
    obj = getattr(obj, part)
  return obj


def lookup(kind: str, spec: str) -> Callable[..., Any]:
  """The custom factory ``spec`` names (``kind``: param, transforms, objective).

  Built-in names are not looked up here (the built-in code paths handle them);
  an unknown name raises :class:`RegistryError` listing the known ones.
  """
  table, builtins = _KINDS[kind]
  if is_import_path(spec):
    obj = _import(kind, spec)
    if callable(obj):
      return obj
    # A module that registers its pieces when imported: "mylab.pieces:name".
    _, _, name = spec.partition(IMPORT_SEPARATOR)
    if name in table:
      return table[name]
    raise RegistryError(f"{kind} {spec!r} is not callable; name a factory "
                        "function")
  if spec in table:
    return table[spec]
  known = ", ".join(builtins + tuple(sorted(table))) or "none registered"
  raise RegistryError(
      f"unknown {kind} {spec!r}; known: {known}. Register one with "
      f"atlasjax.optvis.registry.register_{kind}(name, factory) or pass "
      "'package.module:factory'")


def check(kind: str, spec: str) -> None:
  """Raises :class:`RegistryError` unless ``spec`` names a known ``kind``."""
  if spec not in _KINDS[kind][1]:
    lookup(kind, spec)


__all__ = [
    "register_param", "register_transforms", "register_objective",
    "param_names", "transform_names", "objective_names", "lookup", "check",
    "is_import_path", "RegistryError", "BUILTIN_PARAMS", "BUILTIN_TRANSFORMS",
]
