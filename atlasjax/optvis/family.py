"""Objective families keyed on their structure, so notebooks do not recompile.

The renderer compiles one program per objective *family* (``make``, the
function ``arg -> Objective``) and caches it. Keyed on the identity of
``make``, re-running a notebook cell that rebuilds the same lambda,

    make = lambda c: objectives.channel("mixed4a", c) - 1e-3 * objectives.total_variation()

would compile again (tens of seconds) although nothing changed. :func:`keyed`
wraps ``make`` in a :class:`Family` whose equality is structural: two
functions are the same family when they have the same code (wherever it was
typed: file and line numbers are not part of the key) and their captured
values (closure cells, defaults, and the globals the code reads) are equal.
Values are compared by value where that is safe — numbers, strings, tuples,
arrays (by dtype, shape and bytes), frozen dataclasses, functions
(recursively), modules — and by identity otherwise, so a mutable object that
changes between calls is never mistaken for the same one. A different body, a
different layer name or a different constant array gives a different family.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import types
from typing import Any, Callable, Hashable

import numpy as np

# Captured values are followed at most this deep (functions calling helper
# functions calling helpers …); beyond it the identity is used.
MAX_DEPTH = 8
_BY_VALUE = (type(None), bool, int, float, complex, str, bytes)


def _array_key(x) -> Hashable:
  a = np.asarray(x)
  return ("array", a.dtype.str, a.shape, hashlib.sha256(
      np.ascontiguousarray(a).tobytes()).hexdigest())


def _value_key(value: Any, depth: int) -> Hashable:
  if isinstance(value, _BY_VALUE):
    return (type(value).__name__, value)
  if isinstance(value, (tuple, list, frozenset)):
    return (type(value).__name__,
            tuple(_value_key(v, depth) for v in value))
  if isinstance(value, np.ndarray) or type(value).__module__.startswith("jax"):
    try:
      return _array_key(value)
    except Exception:  # pylint: disable=broad-except  # e.g. a tracer
      return ("id", id(value))
  if isinstance(value, types.ModuleType):
    return ("module", value.__name__)
  if isinstance(value, Family):
    return value.key
  if hasattr(value, "fn") and type(value).__name__ in ("Objective", "_Sum"):
    # An Objective by what it computes (its function and captured values).
    return ("objective", _value_key(value.fn, depth), value.layers, value.name)
  if isinstance(value, functools.partial):
    return ("partial", _value_key(value.func, depth),
            _value_key(value.args, depth),
            _value_key(tuple(sorted(value.keywords.items())), depth))
  if isinstance(value, types.FunctionType) and depth < MAX_DEPTH:
    return function_key(value, depth + 1)
  if (dataclasses.is_dataclass(value) and not isinstance(value, type)
      and type(value).__dataclass_params__.frozen):
    try:
      hash(value)
      return ("dataclass", value)
    except TypeError:
      pass
  return ("id", id(value))


def code_key(code: types.CodeType) -> Hashable:
  """``code``'s computation, without where it was written.

  Code objects compare equal only at the same first line, so the same lambda
  typed again on another line (another notebook cell) would be a different
  family; this key keeps the bytecode, names and constants and drops the
  file, line numbers and position tables.
  """
  consts = tuple(code_key(c) if isinstance(c, types.CodeType)
                 else _const_key(c) for c in code.co_consts)
  return ("code", code.co_code, code.co_argcount, code.co_posonlyargcount,
          code.co_kwonlyargcount, code.co_flags, code.co_names,
          code.co_varnames, code.co_freevars, code.co_cellvars, consts)


def _const_key(c: Any) -> Hashable:
  """A constant by type and value (``1``, ``1.0`` and ``True`` differ)."""
  if isinstance(c, (tuple, frozenset)):
    return (type(c).__name__, tuple(_const_key(x) for x in c))
  return (type(c).__name__, c)


def function_key(fn: Callable, depth: int = 0) -> Hashable:
  """A hashable description of ``fn``'s computation (see the module doc)."""
  if not isinstance(fn, types.FunctionType):
    return _value_key(fn, MAX_DEPTH)   # callables objects: their own eq/id
  code = code_key(fn.__code__)
  cells = tuple(_value_key(c.cell_contents, depth) if _filled(c) else ("empty",)
                for c in fn.__closure__ or ())
  defaults = _value_key(fn.__defaults__ or (), depth)
  kwdefaults = _value_key(tuple(sorted((fn.__kwdefaults__ or {}).items())), depth)
  names = _global_names(fn.__code__)
  used = tuple((n, _value_key(fn.__globals__[n], depth)) for n in names
               if n in fn.__globals__)
  return ("function", code, cells, defaults, kwdefaults, used)


def _filled(cell) -> bool:
  try:
    cell.cell_contents  # pylint: disable=pointless-statement
    return True
  except ValueError:
    return False


def _global_names(code: types.CodeType) -> tuple[str, ...]:
  """Names ``code`` (and code nested in it) may read as globals."""
  names = set(code.co_names)
  for const in code.co_consts:
    if isinstance(const, types.CodeType):
      names.update(_global_names(const))
  return tuple(sorted(names))


class Family:
  """``make`` with structural equality; calls go straight through."""

  def __init__(self, make: Callable[..., Any]):
    self.make = make
    self.key = ("family", function_key(make))
    self._hash = hash(self.key)

  def __call__(self, *args):
    return self.make(*args)

  def __eq__(self, other):
    return isinstance(other, Family) and self.key == other.key

  def __hash__(self):
    return self._hash

  def __repr__(self):
    return f"Family({getattr(self.make, '__qualname__', self.make)!r})"


def keyed(make: Callable[..., Any]) -> Callable[..., Any]:
  """``make`` as a structurally keyed :class:`Family` (a no-op if it is one).

  Hashable callables that are not plain functions (frozen dataclasses such as
  the scripts' objective makers) already compare by value and are returned as
  they are.
  """
  if isinstance(make, Family) or not isinstance(make, types.FunctionType):
    return make
  try:
    return Family(make)
  except TypeError:   # an unhashable captured value: fall back to identity
    return make
