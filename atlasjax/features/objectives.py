"""Dictionary features as objectives, and all of them rendered in one batch.

A dictionary feature ``f`` can be visualized two ways:

* ``"direction"``: its decoder row as a direction in activation space
  (:func:`atlasjax.optvis.objectives.direction`, the mean dot product over
  positions), what the feature *writes*;
* ``"response"``: its encoder response, what the feature *reads*: the mean
  over positions of ``relu(a · w_f + b_f)``, with
  ``w_f = encoder[:, f] / input_scale`` and
  ``b_f = encoder_bias[f] − decoder_bias · encoder[:, f]``, exactly the
  feature's pre-TopK activation in the interchange formula.

Both are families ``arg -> Objective`` whose argument is an array, so
:func:`render_features` renders any set of features as one vmapped program.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax.features import sae
from atlasjax.models import base
from atlasjax.optvis import objectives
from atlasjax.optvis import render as render_lib

KINDS = ("direction", "response")


@dataclasses.dataclass(frozen=True)
class Direction:
  """The family ``vec -> direction(layer, vec)``; hashable, so every caller
  (feature renders, neuron groups) shares one compiled render program."""
  layer: str

  def __call__(self, vec) -> objectives.Objective:
    return objectives.direction(self.layer, vec)


@dataclasses.dataclass(frozen=True)
class Response:
  """The family ``(w, b) -> response(layer, (w, b))`` (see :func:`response`)."""
  layer: str

  def __call__(self, arg) -> objectives.Objective:
    return response(self.layer, arg)


def response(layer: str, arg) -> objectives.Objective:
  """Mean over positions of ``relu(a · w + b)``; ``arg = (w [C], b [])``."""
  w, b = arg

  def fn(acts):
    return jnp.mean(jax.nn.relu(acts[layer] @ w + b))
  return objectives.Objective(fn, (layer,), f"dictionary_response:{layer}")


def response_args(d: sae.Dictionary, features: Sequence[int]):
  """``(w [N, C], b [N])`` of :func:`response` for ``features``."""
  index = jnp.asarray(features)
  enc = d.encoder[:, index]
  return (enc.T / d.input_scale,
          d.encoder_bias[index] - d.decoder_bias @ enc)


def direction_args(d: sae.Dictionary, features: Sequence[int]) -> jax.Array:
  """Decoder rows ``[N, C]`` of ``features``."""
  return d.decoder[jnp.asarray(features)]


def feature_objective(d: sae.Dictionary, layer: str, feature: int,
                      kind: str = "direction") -> objectives.Objective:
  """One feature's objective (composes with the other objectives)."""
  if kind == "direction":
    return objectives.direction(layer, direction_args(d, [feature])[0])
  w, b = response_args(d, [feature])
  return response(layer, (w[0], b[0]))


def render_features(model: base.Model, params, d: sae.Dictionary, layer: str,
                    features: Sequence[int] | None = None, kind: str = "direction",
                    config: render_lib.RenderConfig = render_lib.RenderConfig(),
                    key: jax.Array | None = None) -> render_lib.RenderResult:
  """Renders ``features`` (default all ``F``) as one batched program."""
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
  sae.check_fits(d, model, layer)
  features = np.arange(d.features) if features is None else np.asarray(features)
  if kind == "direction":
    make, args = Direction(layer), direction_args(d, features)
  else:
    make, args = Response(layer), response_args(d, features)
  return render_lib.render(model, params, make, args=args, config=config,
                           key=key, item_ids=features)
