"""Feature accentuation: a feature shown *inside* a given photo.

Hamblin, Fel, Saha, Konkle and Alvarez (2024), "Feature Accentuation:
Revealing 'What' Features Respond to in Natural Images". Instead of starting
from noise, the optimisation starts from the photo and maximises

    objective(image) − λ · ‖a_L(image) − a_L(photo)‖² / ‖a_L(photo)‖²

where ``a_L`` are the activations at a chosen layer ``L``: the image may only
change in ways that keep ``L``'s reading of it close to the photo's, so the
result shows what in *this* photo drives the feature.

The parameterization starts from the photo's own spectrum, MaCo-style: the
photo is mapped back through the sigmoid and the colour recorrelation
(``t = decorrelate(logit(photo))``), and the raw parameters are the phase of
``rfft2(t)`` while its magnitude stays fixed (it travels with the raw
parameters, behind ``stop_gradient``, so each item of a batch has its own
photo's magnitude; Adam leaves a parameter whose gradient is always zero
exactly where it is). At step 0 the image *is* the photo (up to
:data:`LOGIT_EPS` clipping).

Everything runs through :func:`atlasjax.optvis.render.render`: ``N`` photos,
each with its own objective argument and its own target activations, are one
vmapped, scanned program (``render(..., start=...)``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax.models import base
from atlasjax.optvis import objectives as objectives_lib
from atlasjax.optvis import param as param_lib
from atlasjax.optvis import render as render_lib
from atlasjax.optvis import spectrum as spectrum_lib

PyTree = Any

# Photos are clipped to [LOGIT_EPS, 1 − LOGIT_EPS] before the logit (horama's
# inverse uses the same epsilon), so saturated pixels map to finite values.
LOGIT_EPS = 1e-3
# Default regularization weight λ and the relative-distance epsilon.
DEFAULT_REG_WEIGHT = 1.0
REG_EPS = 1e-8
# Accentuation's default render: no spatial transforms, so the activations at
# the regularized layer stay aligned with the photo's (a shifted view would be
# compared with an unshifted target), no ReLU redirection, and a learning rate
# that moves each phase by at most ~0.05 rad per step.
DEFAULT_CONFIG = render_lib.RenderConfig(
    steps=64, lr=0.05, transforms="none", redirect_relu_steps=0)


@dataclasses.dataclass
class AccentuationResult:
  """Accentuated photos and what changed.

  Attributes:
    images: ``[N, H, W, 3]`` accentuated images.
    photos: ``[N, H, W, 3]`` the photos as the parameterization reproduces
      them (clipped to [LOGIT_EPS, 1 − LOGIT_EPS]).
    objective_start: ``[N]`` the feature objective on the photo.
    objective_end: ``[N]`` the feature objective on the accentuated image.
    distance: ``[N]`` ``‖a_L(image) − a_L(photo)‖ / ‖a_L(photo)‖``.
    losses: ``[N, steps]`` the minimised loss at each step.
    alpha_map: ``Σ |∂loss/∂image|`` with ``config.alpha_map``, else None.
  """

  images: jax.Array
  photos: jax.Array
  objective_start: jax.Array
  objective_end: jax.Array
  distance: jax.Array
  losses: jax.Array
  alpha_map: jax.Array | None = None

  @property
  def gain(self) -> jax.Array:
    """``objective_end − objective_start``."""
    return self.objective_end - self.objective_start


def photo_spectrum(photos: jax.Array) -> dict[str, jax.Array]:
  """Raw parameters reproducing ``[N, H, W, 3]`` photos: phase and magnitude.

  Returns ``{"phase": [N, 1, 3, H, W//2+1], "magnitude": [N, 1, 3, ...]}``
  (one image per item), the inverse of :func:`photo_param`'s ``to_rgb``.
  """
  x = jnp.clip(jnp.asarray(photos, jnp.float32), LOGIT_EPS, 1.0 - LOGIT_EPS)
  t = jnp.asarray(spectrum_lib.decorrelate(np.asarray(jnp.log(x / (1.0 - x)))))
  f = jnp.fft.rfft2(jnp.moveaxis(t, -1, 1), axes=(-2, -1))[:, None]
  return {"phase": jnp.angle(f), "magnitude": jnp.abs(f)}


def photo_param(size: int) -> param_lib.ImageParam:
  """Phase-only parameterization whose magnitude rides in the raw parameters.

  ``to_rgb({"phase", "magnitude"})`` is :func:`param.maco_image` without the
  standardizations (so the photo's own scale is kept), then the colour
  recorrelation and sigmoid. ``init`` gives a flat grey spectrum's shape; the
  renderer starts from :func:`photo_spectrum` instead.
  """
  h, w = param_lib.size_hw(size)
  shape = (1, 3, h, w // 2 + 1)

  def init(key):
    del key
    return {"phase": jnp.zeros(shape), "magnitude": jnp.zeros(shape)}

  def to_rgb(raw):
    inner = param_lib.maco_image(
        (h, w), jax.lax.stop_gradient(raw["magnitude"]), standardize=False)
    return inner.to_rgb(raw["phase"])

  return param_lib.finish(param_lib.ImageParam(init, to_rgb))


@dataclasses.dataclass(frozen=True)
class _Accentuate:
  """``arg -> objective(arg["feature"]) − arg["weight"] · relative distance``."""
  make: Callable[[PyTree], objectives_lib.Objective]
  layer: str

  def __call__(self, arg):
    feature = self.make(arg["feature"])
    return feature - arg["weight"] * activation_distance(self.layer, arg["target"])


def activation_distance(layer: str, target: jax.Array) -> objectives_lib.Objective:
  """``‖a_L − target‖² / ‖target‖²``, averaged over the image batch."""
  def fn(acts):
    a = acts[layer]
    num = jnp.sum((a - target) ** 2, axis=tuple(range(1, a.ndim)))
    return jnp.mean(num / (jnp.sum(target ** 2) + REG_EPS))
  return objectives_lib.Objective(fn, (layer,), f"distance:{layer}")


def _features(model, params, make, feature_args, images, layer, precision):
  """Per image: the feature objective and the activations at ``layer``, with
  the network at the render's ``precision`` (so the target rounds as the
  render's activations do)."""
  obj = make(jax.tree_util.tree_map(lambda a: a[0], feature_args))
  layers = tuple(dict.fromkeys(obj.layers + (layer,)))
  acts = render_lib.network_outputs(model, params, images, layers, precision)

  def one(arg, acts_i, image):
    acts_i = {k: v[None] for k, v in acts_i.items()}
    acts_i[objectives_lib.INPUT] = image[None]
    return make(arg)(acts_i)
  values = jax.vmap(one)(feature_args, {k: acts[k] for k in obj.layers}, images)
  return values, acts[layer]


def check_transforms(config: render_lib.RenderConfig, size: int) -> None:
  """Refuses transforms that change the image size (one line).

  The regularizer compares the activations of the transformed image with
  the photo's at every position, so both must have the same shape.
  """
  image = jax.ShapeDtypeStruct((size, size, 3), jnp.float32)
  shape = jax.eval_shape(config.transform(), jax.random.PRNGKey(0), image).shape
  if tuple(shape) != (size, size, 3):
    raise ValueError(
        f"accentuate: transforms {config.transforms!r} turn {size}×{size} "
        f"images into {shape[0]}×{shape[1]}; accentuation compares "
        "activations with the photo's position by position, so use transforms "
        "that keep the size (e.g. 'none', or shifts that wrap around).")


def accentuate(model: base.Model, params: PyTree, photos: jax.Array,
               make: Callable[[PyTree], objectives_lib.Objective],
               feature_args: PyTree, layer: str,
               reg_weight: float | jax.Array = DEFAULT_REG_WEIGHT,
               config: render_lib.RenderConfig = DEFAULT_CONFIG,
               key: jax.Array | None = None,
               devices: Sequence[jax.Device] | None = None) -> AccentuationResult:
  """Accentuates ``make(feature_args[i])`` in ``photos[i]``, all in one program.

  Args:
    model: an atlasjax model.
    params: its parameters.
    photos: ``[N, S, S, 3]`` in [0, 1] (``config.size`` is set to ``S``).
    make: ``arg -> Objective`` for one photo (e.g.
      ``lambda c: objectives.class_logit(c)``).
    feature_args: its arguments with a leading axis ``N``.
    layer: the regularized layer ``L``.
    reg_weight: λ, a scalar or one per photo ``[N]``.
    config: render settings (default :data:`DEFAULT_CONFIG`).
    key: PRNG key for the transforms (default ``PRNGKey(0)``).
    devices: devices to shard the photos over (default all local devices,
      as :func:`~atlasjax.optvis.render.render`).
  """
  photos = jnp.asarray(photos, jnp.float32)
  n, h, w, _ = photos.shape
  if h != w:
    raise ValueError(f"accentuate: photos must be square, got {h}×{w}; "
                     "centre-crop them (atlasjax.images.center_crop)")
  model.layer(layer)   # a clear error for an unknown layer
  config = dataclasses.replace(config, size=h, images_per_item=1)
  check_transforms(config, h)
  start = photo_spectrum(photos)
  image_param = photo_param(h)
  # The feature family, on the render's abstract activations, before the
  # photos' own forward pass calls it (one line for a bad family).
  render_lib.check(model, params, make, feature_args, config, param=image_param)
  reproduced = jax.vmap(image_param.to_rgb)(start)[:, 0]
  value0, target = _features(model, params, make, feature_args, reproduced, layer,
                             config.precision)
  args = {"feature": feature_args, "target": target,
          "weight": jnp.broadcast_to(jnp.asarray(reg_weight, jnp.float32), (n,))}
  result = render_lib.render(model, params, _Accentuate(make, layer), args, config,
                             key, param=image_param, start=start, devices=devices)
  value1, acts = _features(model, params, make, feature_args, result.images, layer,
                           config.precision)
  axes = tuple(range(1, acts.ndim))
  distance = (jnp.sqrt(jnp.sum((acts - target) ** 2, axis=axes))
              / jnp.sqrt(jnp.sum(target ** 2, axis=axes) + REG_EPS))
  return AccentuationResult(result.images, reproduced, value0, value1, distance,
                            result.losses, result.alpha_map)


__all__ = ["accentuate", "check_transforms", "AccentuationResult", "photo_spectrum", "photo_param",
           "activation_distance", "DEFAULT_CONFIG", "DEFAULT_REG_WEIGHT",
           "LOGIT_EPS"]
