"""What an atlas icon maximises: a built-in form, or your own objective family.

``AtlasConfig.objective`` (and the scripts' ``--objective``) is one of

* a **form** of :func:`~atlasjax.optvis.objectives.direction_neuron_cossim`:
  ``"cosine"`` (the default), ``"lucid"`` or ``"lucid_notebook"`` — the
  paper's icon objective, with the layout's whitening matrix ``S`` (when
  ``whiten``) and ``cossim_pow``;
* a **family** ``direction -> Objective`` (any callable; in Python only).
  Item ``i`` of a grid receives ``arg = directions[i]``: a float32 ``[C]``
  array, the mean activation vector of cell ``i`` at the atlas layer as
  collected (not whitened; ``C`` = the layer's channels; the same row as the
  grid's ``directions.npy``). It is a traced array, so the family must not
  branch on its values in Python. It returns an
  :class:`~atlasjax.optvis.objectives.Objective` (its ``acts`` are those of
  the render: ``[1, H, W, C]`` at ``icon_size`` after the transforms).
  Whitening and ``cossim_pow`` are not passed to it: close over what you need;
* a **registered name** (:func:`atlasjax.optvis.registry.register_objective`)
  or a ``"package.module:factory"`` import path (what a script's
  ``--objective`` can name in a new process): ``factory(layer, **kw)`` returns
  the family above. It is called with ``whitening=S`` (the ``[C, C]`` matrix
  the layout saved, or None when ``whiten`` is off) and ``cossim_pow=`` when
  its signature names these keywords (or takes ``**kwargs``), so the built-in
  forms' whitening stays available to it.

A custom objective is **keyed by its structure**
(:func:`atlasjax.optvis.family.function_key`: its code wherever it was typed,
the values it captures, the functions it calls by name): :func:`describe`
turns it into a JSON-able record whose digest enters the icons' cache key, the
run record and ``atlas.json``, so icons made with another objective are
rendered afresh, never reused. A value the key can only compare by identity
(an arbitrary object) makes the digest differ in every process: such icons
are rendered again on a rerun instead of being resumed.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any, Callable, Hashable

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax.optvis import family as family_lib
from atlasjax.optvis import objectives
from atlasjax.optvis import registry
from atlasjax.optvis import render as render_lib

# The icon objective's default form (see objectives.direction_neuron_cossim).
DEFAULT_FORM = "cosine"
# Keywords offered to a registered factory when its signature names them.
FACTORY_KEYWORDS = ("whitening", "cossim_pow")
# Hex digits of a custom objective's structural digest.
DIGEST_CHARS = 16

IconObjective = Any   # str (form, name or import path) or direction -> Objective
Family = Callable[[Any], objectives.Objective]


class IconObjectiveError(ValueError):
  """An icon objective that cannot be resolved or built (one line)."""


def is_form(spec: Any) -> bool:
  """Whether ``spec`` names a form of ``direction_neuron_cossim``."""
  if not isinstance(spec, str) or registry.is_import_path(spec):
    return False
  try:
    objectives.direction_neuron_cossim("layer", np.zeros(1, np.float32),
                                       form=spec)
  except ValueError:
    return False
  return True


def label(objective: IconObjective) -> str:
  """A short human-readable name (for messages)."""
  if isinstance(objective, str):
    return objective
  return getattr(objective, "__qualname__", type(objective).__name__)


def make_atlas_objective(layer: str, whitening, cossim_pow: float,
                         form: str = DEFAULT_FORM) -> Family:
  """``direction -> Objective``: the paper's icon objective for one cell."""
  def make(direction):
    return objectives.direction_neuron_cossim(
        layer, direction, cossim_pow=cossim_pow, whitening=whitening, form=form)
  return make


def _accepted(factory: Callable[..., Any], offered: dict) -> dict:
  """The keywords of ``offered`` that ``factory``'s signature accepts."""
  try:
    parameters = inspect.signature(factory).parameters.values()
  except (TypeError, ValueError):   # a builtin without a signature
    return {}
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
    return dict(offered)
  names = {p.name for p in parameters}
  return {k: v for k, v in offered.items() if k in names}


def factory(spec: str) -> Callable[..., Any]:
  """The registered (or imported) factory a name or import path names."""
  try:
    return registry.lookup("objective", spec)
  except registry.RegistryError as e:
    if registry.is_import_path(spec):
      raise
    forms = ", ".join(objectives.COSSIM_FORMS)
    raise IconObjectiveError(f"{e}; or use an icon form: {forms}") from None


def icon_family(objective: IconObjective, layer: str, whitening,
                cossim_pow: float) -> Family:
  """The structurally keyed family ``direction -> Objective`` of the icons.

  ``whitening`` is the ``[C, C]`` matrix or None (see the module docstring
  for who receives it).
  """
  if is_form(objective):
    make = make_atlas_objective(
        layer, None if whitening is None else jnp.asarray(whitening),
        cossim_pow, objective)
  elif isinstance(objective, str):
    build = factory(objective)
    offered = {"whitening": None if whitening is None else jnp.asarray(whitening),
               "cossim_pow": cossim_pow}
    make = build(layer, **_accepted(build, offered))
    if not callable(make):
      raise IconObjectiveError(
          f"objective {objective!r}: its factory returned "
          f"{type(make).__name__}, not a family (a callable direction -> "
          "Objective)")
  elif callable(objective):
    make = objective
  else:
    raise IconObjectiveError(
        f"objective={objective!r}: use a form ({', '.join(objectives.COSSIM_FORMS)}), "
        "a registered name, 'package.module:factory' or a callable "
        "direction -> Objective")
  return family_lib.keyed(make)


def _by_identity(key: Hashable) -> bool:
  """Whether a structural key compares some value by identity (``("id", n)``)."""
  if isinstance(key, tuple):
    if len(key) == 2 and key[0] == "id" and isinstance(key[1], int):
      return True
    return any(_by_identity(k) for k in key)
  return False


def digest(fn: Callable[..., Any]) -> tuple[str, bool]:
  """``(hex digest, stable)`` of ``fn``'s structure; ``stable`` is False when
  a value is keyed by identity (a different digest in every process)."""
  key = fn.key if isinstance(fn, family_lib.Family) else family_lib.function_key(fn)
  text = repr(key)
  return (hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS],
          not _by_identity(key))


def describe(objective: IconObjective) -> str | dict:
  """A JSON-able record of the objective that changes with its structure.

  A form stays its name (so existing work directories keep their keys); a
  name or import path is ``{"spec", "factory", "key"}`` (the key digests the
  factory's structure, so editing it re-renders); a family is
  ``{"family", "module", "key"}``.
  """
  if is_form(objective):
    return objective
  if isinstance(objective, str):
    build = factory(objective)
    key, stable = digest(build)
    out = {"spec": objective, "factory": label(build), "key": key}
  else:
    key, stable = digest(objective)
    out = {"family": label(objective),
           "module": getattr(objective, "__module__", None) or "", "key": key}
  if not stable:
    out["keyed_by_identity"] = True
  return out


def check(objective: IconObjective, model, layer: str, whiten: bool,
          cossim_pow: float, render_config, params=None) -> None:
  """Builds the icons' family and checks it on the model; compiles nothing.

  A form with a whitening matrix exactly when the icons will have one (some
  forms refuse it); a custom family on a zero direction of the layer's
  width (:func:`check_family`). Raises :class:`IconObjectiveError` (one
  line) otherwise.
  """
  depth = model.layer(layer).depth
  whitening = np.eye(depth, dtype=np.float32) if whiten else None
  try:
    make = icon_family(objective, layer, whitening, cossim_pow)
    if is_form(objective):
      make(jnp.zeros((depth,), jnp.float32))   # builds: some forms refuse S
    else:
      check_family(model, make, np.zeros((1, depth), np.float32),
                   render_config, params)
  except IconObjectiveError:
    raise
  except (ValueError, KeyError, TypeError) as e:
    # KeyError: base.UnknownLayerError; TypeError: a family called wrongly.
    raise IconObjectiveError(str(e)) from None


def check_family(model, make: Family, args, render_config, params=None) -> None:
  """A family's objective for ``args`` (one item) checked before compiling.

  With ``params``, on the model's abstract activations at the render's size
  (:func:`atlasjax.optvis.render.check`: declared layers, a scalar value,
  indices in range, no Python branch on a per-item argument); without (a
  config checked before the weights are at hand), that it makes an
  Objective reading layers the model has.
  """
  if params is not None:
    render_lib.check(model, params, make, args, render_config)
    return
  built = make(jax.tree_util.tree_map(lambda a: jnp.asarray(a)[0], args))
  if not isinstance(built, objectives.Objective):
    raise IconObjectiveError(
        f"the family returned {type(built).__name__}, not an Objective; wrap "
        "the function: objectives.Objective(fn, layers=(...), name=...)")
  for name in built.layers:
    model.layer(name)


# Entries of a description that only name the objective for people.
NAME_ENTRIES = ("family", "module", "factory", "spec")


def structural(described: str | dict) -> str | dict:
  """A description (:func:`describe`) without its names: what keys icons
  (the same family typed again under another name renders the same icons)."""
  if isinstance(described, dict):
    return {k: v for k, v in described.items() if k not in NAME_ENTRIES}
  return described

