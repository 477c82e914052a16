"""Attribution maps: input saliency, SmoothGrad, CAM and Grad-CAM.

All functions are pure, take a batch (``images [B, H, W, 3]`` RGB in [0, 1],
``classes [B]`` int) and are jitted with the model as a static argument.

* :func:`saliency`: vanilla gradient of a class logit w.r.t. the input
  (Simonyan et al. 2013); :func:`saliency_map` reduces it to ``[B, H, W]``.
* :func:`smoothgrad`: the gradient averaged over ``n`` noisy copies (Smilkov
  et al. 2017) with an explicit key; noise sd is a fraction of each image's
  value range (``max - min``).
* :func:`cam`: class activation map ``A @ W[:, c]`` for a global-average-pool
  + linear head (Zhou et al. 2016); :func:`model_cam` reads the model's
  head. Its mean over positions plus the class bias is exactly the logit.
* :func:`grad_cam`: ``relu(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean
  of ``d logit_c / d A_k`` (Selvaraju et al. 2017), at any spatial layer.
  :func:`reached_layers` tells which layers the class logits depend on at
  all: with a CLS-token head (a ViT) the last block's patch tokens reach no
  logit, so Grad-CAM there is zero by construction;
  :func:`deepest_reached_layer` is the deepest layer where it is not.

Gradients w.r.t. a layer use the model protocol's ``perturb`` argument: an
additive offset on the layer's output, whose derivative at zero is the gradient
w.r.t. the activations (no hooks, no graph surgery). Only outputs the rest of
the network reads (block outputs, not post-ReLU branch outputs, which the block
concatenates before their ReLU) can be perturbed; others raise
:class:`NotOnPathError` listing the outputs that can (``model.perturbable``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from atlasjax import xla_cpu
from atlasjax.models import base

LOGITS = "logits"
_EPS = 1e-12


class NotOnPathError(base.NotPerturbableError):
  """A layer whose output the model cannot perturb (nothing reads it as is)."""


# ---------------------------------------------------------------------------
# Gradients.

def _class_scores(logits, classes):
  return jnp.take_along_axis(logits, classes[:, None], axis=1)[:, 0]


@functools.partial(jax.jit, static_argnames=("model",))
def saliency(model: base.Model, params, images, classes):
  """``d logit[b, classes[b]] / d images[b]``, shape ``[B, H, W, 3]``."""
  def total(x):
    logits = model.apply(params, x, layers=(LOGITS,))[LOGITS]
    return _class_scores(logits, classes).sum()
  return jax.grad(total)(images)


@functools.partial(jax.jit, static_argnames=("model", "n"))
def smoothgrad(model: base.Model, params, images, classes, key, n: int,
               noise_fraction):
  """Mean input gradient over ``n`` noisy copies of each image.

  Args:
    key: PRNG key; image ``b``, sample ``s`` uses
      ``fold_in(fold_in(key, b), s)``, so results do not depend on the batch
      size or on ``n`` for the samples they share.
    n: number of noisy samples (they are processed one after another, so
      memory is that of one gradient).
    noise_fraction: noise sd as a fraction of each image's ``max - min``
      (Smilkov et al. recommend 0.1–0.2). With ``n=1`` and 0 this is
      :func:`saliency`.
  """
  sd = noise_fraction * (images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3)))
  image_keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(
      jnp.arange(images.shape[0]))

  def step(total, s):
    noise = jax.vmap(lambda k: jax.random.normal(
        jax.random.fold_in(k, s), images.shape[1:], images.dtype))(image_keys)
    noisy = images + sd[:, None, None, None] * noise
    return total + saliency(model, params, noisy, classes), None

  # On CPU the loop body's gradient is rewritten for XLA:CPU (convolution
  # layouts, max pooling's gradient): see atlasjax.xla_cpu.
  total, _ = jax.lax.scan(xla_cpu.loop_body(step), jnp.zeros_like(images),
                          jnp.arange(n))
  return total / n


def saliency_map(gradients, reduce: str = "max_abs"):
  """``[B, H, W, 3]`` gradients to ``[B, H, W]`` maps.

  ``reduce``: ``"max_abs"`` (Simonyan: max over channels of ``|g|``) or
  ``"l2"`` (the per-pixel gradient norm).
  """
  if reduce == "max_abs":
    return jnp.abs(gradients).max(axis=-1)
  if reduce == "l2":
    return jnp.sqrt((gradients ** 2).sum(axis=-1))
  raise ValueError(f"Unknown reduce {reduce!r}; use 'max_abs' or 'l2'.")


# ---------------------------------------------------------------------------
# Gradients w.r.t. an intermediate layer.

@functools.partial(jax.jit, static_argnames=("model", "layers"))
def _reach(model: base.Model, params, images, classes, layers: tuple[str, ...]):
  shapes = jax.eval_shape(lambda p, x: model.apply(p, x, layers=layers), params, images)

  def score(offsets):
    outputs = model.apply(params, images, layers=(*layers, LOGITS), perturb=offsets)
    return _class_scores(outputs[LOGITS], classes).sum()

  grads = jax.grad(score)({n: jnp.zeros(s.shape, s.dtype) for n, s in shapes.items()})
  return {n: jnp.any(g != 0) for n, g in grads.items()}


def reached_layers(model: base.Model, params, images, classes,
                   layers=None) -> tuple[str, ...]:
  """Those of ``layers`` whose gradient of the class logits is not all zero.

  One backward pass with a zero ``perturb`` offset on every layer at once.
  A layer that no logit reads (exactly zero gradient: JAX's derivative of
  an unused value) gets a Grad-CAM that is zero by construction — a
  CLS-token ViT's last block, whose patch tokens only the final per-token
  LayerNorm reads before the head takes the CLS token.

  Args:
    model, params, images, classes: as for :func:`grad_cam`.
    layers: layer names (default: every perturbable spatial layer).

  Returns:
    The reached layers, in the order given (network order by default).
  """
  if layers is None:
    perturbable = model.perturbable
    layers = tuple(l.name for l in model.layers if l.spatial
                   and (perturbable is None or l.name in perturbable))
  layers = model.check_perturbable(tuple(layers))
  reached = _reach(model, params, images, classes, layers)
  return tuple(n for n in layers if bool(reached[n]))


def deepest_reached_layer(model: base.Model, params, images, classes,
                          reached: tuple[str, ...] | None = None) -> str:
  """The deepest perturbable spatial layer the class logits depend on.

  Grad-CAM's usual layer is the last convolutional one (Selvaraju et al.
  2017); this generalises it to networks whose last spatial layers do not
  reach the logits. On a CLS-token ViT it is the last block's first
  LayerNorm (the keys and values the CLS token attends to, the layer
  pytorch-grad-cam recommends for ViTs); on a GAP-head CNN, the last
  spatial layer. ``reached``: :func:`reached_layers`' answer for every
  perturbable spatial layer, where the caller already has it.
  """
  if reached is None:
    reached = reached_layers(model, params, images, classes)
  if not reached:
    raise ValueError(f"No spatial layer of {model.name!r} reaches the logits "
                     "(is its classifier all zeros, e.g. an untrained big_vision "
                     "head?); pass Grad-CAM layers explicitly.")
  return reached[-1]


def layer_gradient(model: base.Model, params, images, layer: str,
                   score_fn):
  """Activations at ``layer`` and ``d score_fn(outputs) / d activations``.

  Args:
    model, params, images: as for ``model.apply``.
    layer: a spatial layer name.
    score_fn: ``dict[str, Array] -> scalar`` over the model outputs (``layer``
      and ``logits`` are computed); the gradient is of this scalar.

  Returns:
    ``(activations, gradient)``, both shaped like ``outputs[layer]``.

  Raises:
    NotOnPathError: ``layer`` is not consumed by the computation after it.
  """
  try:
    model.check_perturbable((layer,))
  except base.NotPerturbableError as e:
    raise NotOnPathError(
        f"Gradients w.r.t. {layer!r} need it to be perturbable. {e}") from None
  wanted = tuple(dict.fromkeys((layer, LOGITS)))
  shape = jax.eval_shape(
      lambda p, x: model.apply(p, x, layers=(layer,))[layer], params, images)

  def score(offset):
    outputs = model.apply(params, images, layers=wanted, perturb={layer: offset})
    return score_fn(outputs), outputs[layer]

  offset = jnp.zeros(shape.shape, shape.dtype)
  grad, acts = jax.grad(score, has_aux=True)(offset)
  return acts, grad


# ---------------------------------------------------------------------------
# Class activation maps.

def cam(features, kernel, classes):
  """Class activation maps ``sum_k features[..., k] * kernel[k, c]``.

  Args:
    features: ``[B, h, w, C]`` activations that the head global-average-pools.
    kernel: ``[C, K]`` weights of the linear head.
    classes: ``[B]`` class per image.

  Returns:
    ``[B, h, w]`` unnormalised maps; ``mean over (h, w) + bias[c]`` is logit ``c``.
  """
  return jnp.einsum("bhwc,cb->bhw", features, kernel[:, classes])


@functools.partial(jax.jit, static_argnames=("model",))
def model_cam(model: base.Model, params, images, classes):
  """CAM at ``model.cam_layer`` through ``model.classifier_params(params)``.

  Exact for models whose head is global-average-pool + linear (GoogLeNet,
  EfficientNet-Lite): the maps' spatial mean plus the bias is the logit.
  """
  if model.cam_layer is None or model.classifier is None:
    raise ValueError(f"Model {model.name!r} declares no global-average-pool + "
                     "linear head, which CAM needs (a ViT's CLS-token head is none); "
                     "use grad_cam(model, params, images, classes, layer) at any "
                     "spatial layer, or declare cam_layer= and classifier= in "
                     "from_flax for a GAP head.")
  layer = model.cam_layer
  features = model.apply(params, images, layers=(layer,))[layer]
  return cam(features, model.classifier_params(params)["kernel"], classes)


@functools.partial(jax.jit, static_argnames=("model", "layer"))
def grad_cam(model: base.Model, params, images, classes, layer: str):
  """Grad-CAM ``relu(sum_k alpha_k A_k)``, ``alpha_k = mean_ij d y_c / d A_ijk``.

  Returns ``[B, h, w]`` unnormalised maps at ``layer``'s resolution.
  """
  def score(outputs):
    return _class_scores(outputs[LOGITS], classes).sum()
  acts, grads = layer_gradient(model, params, images, layer, score)
  weights = grads.mean(axis=(1, 2))
  return jax.nn.relu(jnp.einsum("bhwc,bc->bhw", acts, weights))


def normalize_map(maps):
  """``relu(m) / max(relu(m))`` per map of ``[B, h, w]`` (zeros stay zero)."""
  maps = jax.nn.relu(maps)
  return maps / jnp.maximum(maps.max(axis=(1, 2), keepdims=True), _EPS)
