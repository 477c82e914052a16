"""Renderer-based classic visualizations (lecture "Visualizing ConvNets").

Everything here is a thin recipe on top of :func:`atlasjax.optvis.render.render`:

* :func:`render_class_models` — class model visualization (Simonyan et al.,
  2014): gradient ascent on a class logit, optionally minus L2 / total
  variation penalties on the image, several classes in one batched render.
* :func:`render_activation_grid` — the "building blocks" activation grid (Olah
  et al., 2018): the activation vector at every spatial position of a layer
  for one photo is feature-inverted with the activation-atlas icon objective
  (``direction_neuron_cossim`` at the icon's centre, optionally whitened), all
  ``H·W`` positions in one render call, and the icons are laid out on the
  photo's grid (:func:`activation_grid_figure`).
* Neuron interplay (Olah et al., 2017): :func:`render_diversity` (``K``
  images of one channel pushed apart by the diversity term),
  :func:`render_interpolation` (frames between two channels with the shared +
  separate parameterization and the alignment term) and
  :func:`render_channel_sum` (channel A, channel B and A + B in one batch).

The objective factories are frozen dataclasses, so they hash by value: the
renderer's compilation cache (keyed on the factory) is reused by a second call
with the same settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax import plotting
from atlasjax.atlas import render_atlas
from atlasjax.models import base
from atlasjax.optvis import objectives
from atlasjax.optvis import param as param_lib
from atlasjax.optvis import render as render_lib

# Lucid's feature-visualization notebooks: ``- 1e2 * diversity(layer)``.
DIVERSITY_WEIGHT = 1e2
# Lucid's interpolation notebook weights alignment by 1e-1.
ALIGNMENT_WEIGHT = 1e-1
# Activation-grid icons use the atlas icon objective's cosine power.
GRID_COSSIM_POW = render_atlas.DEFAULT_COSSIM_POW
# Items of :func:`render_channel_sum`: (weight of A, weight of B).
CHANNEL_SUM_WEIGHTS = ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0))
CHANNEL_SUM_NAMES = ("A", "B", "A+B")


# ----------------------------------------------------------------------------
# Class model visualization.

@dataclasses.dataclass(frozen=True)
class ClassModelObjective:
  """``class index -> logit - l2_weight·L2(image) - tv_weight·TV(image)``.

  Simonyan et al. maximise ``S_c(I) - λ‖I‖²``; :func:`objectives.l2` is
  Lucid's ``sqrt(ε + Σ (x - constant)²)`` about ``constant`` (default mid-grey,
  so the penalty pulls towards grey rather than black).
  """
  layer: str = "logits"
  l2_weight: float = 0.0
  tv_weight: float = 0.0
  l2_constant: float = 0.5

  def __call__(self, label) -> objectives.Objective:
    obj = objectives.class_logit(label, self.layer)
    if self.l2_weight:
      obj = obj - self.l2_weight * objectives.l2(constant=self.l2_constant)
    if self.tv_weight:
      obj = obj - self.tv_weight * objectives.total_variation()
    return obj


def render_class_models(model: base.Model, params, classes: Sequence[int],
                        config: render_lib.RenderConfig, key: jax.Array,
                        objective: ClassModelObjective = ClassModelObjective(),
                        item_ids: Sequence[int] | None = None
                        ) -> render_lib.RenderResult:
  """Renders one class model image per class index, in one batched render.

  ``item_ids`` defaults to the class indices themselves, so a class's image
  depends only on ``key`` and the class — not on which other classes share
  the batch.
  """
  classes = np.asarray(classes, np.int32)
  ids = classes if item_ids is None else np.asarray(item_ids)
  return render_lib.render(model, params, objective, args=jnp.asarray(classes),
                           config=config, key=key, item_ids=ids)


def class_logits(model: base.Model, params, images, classes: Sequence[int],
                 layer: str = "logits") -> np.ndarray:
  """``[N]``: logit of ``classes[i]`` for ``images[i]`` (``[N, H, W, 3]``)."""
  x = jnp.asarray(images)[..., :3]
  logits = np.asarray(model.apply(params, x, layers=(layer,))[layer])
  return logits[np.arange(len(x)), np.asarray(classes)]


# ----------------------------------------------------------------------------
# Activation grid.

@dataclasses.dataclass
class ActivationGrid:
  """An activation grid for one photo.

  Attributes:
    vectors: ``[H, W, C]`` the photo's activations at the layer.
    icons: ``[H, W, s, s, 3]`` in [0, 1]; ``icons[y, x]`` inverts
      ``vectors[y, x]``.
    values: ``[H, W]`` the icon objective on each final icon.
  """
  vectors: np.ndarray
  icons: np.ndarray
  values: np.ndarray


@dataclasses.dataclass(frozen=True)
class GridIconObjective:
  """``vector -> direction_neuron_cossim`` at the icon centre (the atlas icon
  objective, :func:`atlasjax.atlas.render_atlas.make_atlas_objective`).

  ``whitening`` is a ``[C, C]`` matrix or None; equality and hashing use
  ``whitening_digest`` (a digest of its bytes, set by
  :func:`grid_icon_objective`), so equal matrices reuse the compiled renderer.
  """
  layer: str
  cossim_pow: float = GRID_COSSIM_POW
  whitening: object = dataclasses.field(default=None, compare=False)
  whitening_digest: str | None = None

  def __call__(self, vector) -> objectives.Objective:
    return render_atlas.make_atlas_objective(
        self.layer, self.whitening, self.cossim_pow)(vector)


def grid_icon_objective(layer: str, whitening=None,
                        cossim_pow: float = GRID_COSSIM_POW) -> GridIconObjective:
  """A :class:`GridIconObjective`, hashable by value (see its docstring)."""
  if whitening is None:
    return GridIconObjective(layer, float(cossim_pow))
  w = np.ascontiguousarray(whitening, np.float32)
  digest = hashlib.sha256(w.tobytes() + str(w.shape).encode()).hexdigest()
  return GridIconObjective(layer, float(cossim_pow), jnp.asarray(w), digest)


def activation_vectors(model: base.Model, params, photo: np.ndarray,
                       layer: str) -> np.ndarray:
  """``[H, W, C]`` activations of ``layer`` for one ``[h, w, 3]`` photo."""
  x = jnp.asarray(photo, jnp.float32)[None, ..., :3]
  return np.asarray(model.apply(params, x, layers=(layer,))[layer][0])


def render_activation_grid(model: base.Model, params, photo: np.ndarray,
                           layer: str, config: render_lib.RenderConfig,
                           key: jax.Array, whitening: np.ndarray | None = None,
                           cossim_pow: float = GRID_COSSIM_POW
                           ) -> ActivationGrid:
  """Feature-inverts every spatial position of ``layer`` for ``photo``.

  All ``H·W`` vectors are rendered by one render call in one chunk
  (``config.chunk_size`` is overridden to ``H·W``), with the atlas icon
  objective (:func:`atlasjax.atlas.render_atlas.make_atlas_objective`):
  ``direction_neuron_cossim`` at the icon's centre neuron, whitened by
  ``whitening`` (``[C, C]``, e.g. from a collection) when given. Position
  ``(y, x)`` is item ``y·W + x``.
  """
  vectors = activation_vectors(model, params, photo, layer)
  h, w, c = vectors.shape
  make = grid_icon_objective(layer, whitening, cossim_pow)
  cfg = dataclasses.replace(config, chunk_size=h * w, images_per_item=1)
  result = render_lib.render(model, params, make,
                             args=jnp.asarray(vectors.reshape(h * w, c)),
                             config=cfg, key=key)
  icons = np.asarray(result.images)[..., :3]
  return ActivationGrid(vectors=vectors,
                        icons=icons.reshape((h, w) + icons.shape[1:]),
                        values=np.asarray(result.values).reshape(h, w))


def icon_cosines(model: base.Model, params, icons: np.ndarray, layer: str,
                 targets: np.ndarray) -> np.ndarray:
  """``[N, M]`` cosine between each icon's centre activation and ``targets``.

  ``icons`` is ``[N, s, s, 3]`` (or an ``[H, W, s, s, 3]`` grid, flattened);
  ``targets`` is ``[M, C]``. Pass ``vectors @ whitening`` for whitened icons.
  """
  icons = np.asarray(icons)
  icons = icons.reshape((-1,) + icons.shape[-3:])
  a = np.asarray(model.apply(params, jnp.asarray(icons, jnp.float32),
                             layers=(layer,))[layer])
  v = a[:, a.shape[1] // 2, a.shape[2] // 2].astype(np.float64)
  t = np.asarray(targets, np.float64).reshape(-1, v.shape[-1])
  v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
  t /= np.linalg.norm(t, axis=1, keepdims=True) + 1e-12
  return v @ t.T


def activation_grid_figure(photo: np.ndarray, grid: ActivationGrid,
                           pad: int = 1) -> np.ndarray:
  """``photo | icon grid`` as one ``[H, W, 3]`` float image in [0, 1].

  The icons sit row-major on the layer's spatial grid; the photo is resized to
  the icon grid's height.
  """
  h, w = grid.icons.shape[:2]
  tiles = grid.icons.reshape((h * w,) + grid.icons.shape[2:])
  icon_grid = plotting.grid(tiles, ncols=w, pad=pad)
  photo = np.asarray(photo, np.float32)[..., :3]
  gh = icon_grid.shape[0]
  photo = plotting.resize(photo, (gh, round(photo.shape[1] * gh / photo.shape[0])))
  return plotting.hstack([photo, icon_grid])


# ----------------------------------------------------------------------------
# Neuron interplay.

@dataclasses.dataclass(frozen=True)
class DiversityObjective:
  """``(channel, weight) -> channel(layer, c) + weight · diversity(diversity_layer)``.

  ``diversity`` here is already the negative Gram similarity, so a positive
  ``weight`` pushes the ``K`` images of an item apart (Lucid's
  ``channel - 1e2 * diversity``). The weight is an argument, not a field, so
  renders with different weights share one compiled program (and may share
  one batch).
  """
  layer: str
  diversity_layer: str | None = None

  def __call__(self, arg) -> objectives.Objective:
    index, weight = arg
    return (objectives.channel(self.layer, index)
            + weight * objectives.diversity(self.diversity_layer or self.layer))


def render_diversity(model: base.Model, params, layer: str,
                     channels: Sequence[int], k: int,
                     config: render_lib.RenderConfig, key: jax.Array,
                     weight: float | Sequence[float] = DIVERSITY_WEIGHT,
                     diversity_layer: str | None = None,
                     ) -> render_lib.RenderResult:
  """``k`` jointly optimised images per channel: ``images`` is ``[N, k, s, s, 3]``.

  ``weight`` is one diversity weight, or one per channel. Item ``i`` uses item
  id ``channels[i]``, so the same channel with ``weight=0`` (in the same batch
  or another call, same key) starts from the same images: the baseline for
  the diversity effect.
  """
  if k < 2:
    raise ValueError(f"diversity needs k ≥ 2 images per channel, got {k}")
  channels = np.asarray(channels, np.int32)
  weights = np.broadcast_to(np.asarray(weight, np.float32), channels.shape)
  cfg = dataclasses.replace(config, images_per_item=k)
  return render_lib.render(model, params,
                           DiversityObjective(layer, diversity_layer),
                           args=(jnp.asarray(channels), jnp.asarray(weights)),
                           config=cfg, key=key, item_ids=channels)


def gram_similarity(model: base.Model, params, images, layer: str) -> float:
  """Mean pairwise cosine of the Gram matrices of ``images`` (``[K, s, s, 3]``).

  The quantity the diversity term lowers: ``-diversity(layer) / (K - 1)``.
  """
  x = jnp.asarray(images, jnp.float32)[..., :3]
  k = x.shape[0]
  if k < 2:
    raise ValueError("gram_similarity needs at least two images")
  acts = model.apply(params, x, layers=(layer,))
  return float(-objectives.diversity(layer)(acts) / (k - 1))


@dataclasses.dataclass(frozen=True)
class InterpolationObjective:
  """``(a, b) -> channel_interpolate(a → b) + weight · alignment(layer_a)``.

  Frame ``n`` of ``F`` maximises ``(1 - n/(F-1))·A + n/(F-1)·B``: frame 0 is
  channel A only, the last frame channel B only.
  """
  layer_a: str
  layer_b: str
  alignment_weight: float = ALIGNMENT_WEIGHT

  def __call__(self, pair) -> objectives.Objective:
    obj = objectives.channel_interpolate(self.layer_a, pair[0],
                                         self.layer_b, pair[1])
    if self.alignment_weight:
      obj = obj + self.alignment_weight * objectives.alignment(self.layer_a)
    return obj


def render_interpolation(model: base.Model, params, layer_a: str, a: int,
                         layer_b: str, b: int, frames: int,
                         config: render_lib.RenderConfig, key: jax.Array,
                         alignment_weight: float = ALIGNMENT_WEIGHT,
                         ) -> render_lib.RenderResult:
  """Frames from channel ``a`` to channel ``b``: ``images`` is ``[1, F, s, s, 3]``.

  The frames share low-resolution components of the image parameterization
  (:func:`atlasjax.optvis.param.shared_separate`) and the alignment term pulls
  neighbouring frames' activations together, so the frames morph smoothly.
  """
  if frames < 2:
    raise ValueError(f"an interpolation needs ≥ 2 frames, got {frames}")
  cfg = dataclasses.replace(config, images_per_item=frames)
  image_param = param_lib.shared_separate(config.size, frames,
                                          decorrelate=config.decorrelate)
  return render_lib.render(
      model, params, InterpolationObjective(layer_a, layer_b, alignment_weight),
      args=jnp.array([[a, b]], jnp.int32), config=cfg, key=key,
      param=image_param)


@dataclasses.dataclass(frozen=True)
class ChannelSumObjective:
  """``(indices [2], weights [2]) -> w_a·channel(A) + w_b·channel(B)``."""
  layer_a: str
  layer_b: str

  def __call__(self, arg) -> objectives.Objective:
    indices, weights = arg
    return (weights[0] * objectives.channel(self.layer_a, indices[0])
            + weights[1] * objectives.channel(self.layer_b, indices[1]))


def render_channel_sum(model: base.Model, params, layer_a: str, a: int,
                       layer_b: str, b: int, config: render_lib.RenderConfig,
                       key: jax.Array) -> render_lib.RenderResult:
  """Channel A alone, B alone and A + B, one batch: ``images`` ``[3, s, s, 3]``.

  Items follow :data:`CHANNEL_SUM_NAMES`; all three start from the same
  initial image (same item id), so they differ only by the objective.
  """
  weights = np.asarray(CHANNEL_SUM_WEIGHTS, np.float32)
  indices = np.tile(np.array([[a, b]], np.int32), (len(weights), 1))
  cfg = dataclasses.replace(config, images_per_item=1)
  return render_lib.render(
      model, params, ChannelSumObjective(layer_a, layer_b),
      args=(jnp.asarray(indices), jnp.asarray(weights)), config=cfg, key=key,
      item_ids=np.zeros(len(weights), np.int32))


def channel_means(model: base.Model, params, images, layer: str,
                  channels: Sequence[int]) -> np.ndarray:
  """``[N, len(channels)]`` mean activation of each channel for each image."""
  x = jnp.asarray(images, jnp.float32)[..., :3]
  a = np.asarray(model.apply(params, x, layers=(layer,))[layer])
  return a[..., np.asarray(channels)].mean(axis=(1, 2))


__all__ = [
    "ClassModelObjective", "render_class_models", "class_logits",
    "ActivationGrid", "GridIconObjective", "grid_icon_objective",
    "activation_vectors", "render_activation_grid",
    "icon_cosines", "activation_grid_figure", "DiversityObjective",
    "render_diversity", "gram_similarity", "InterpolationObjective",
    "render_interpolation", "ChannelSumObjective", "render_channel_sum",
    "channel_means", "DIVERSITY_WEIGHT", "ALIGNMENT_WEIGHT", "GRID_COSSIM_POW",
    "CHANNEL_SUM_WEIGHTS", "CHANNEL_SUM_NAMES",
]
