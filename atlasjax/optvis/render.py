"""The renderer: one jitted program optimises a whole batch of visualizations.

``render(model, params, make, args, config, key)`` renders ``N`` objectives of
the same *family* — ``make(arg)`` builds item ``i``'s :class:`Objective` from
``arg = tree_map(lambda x: x[i], args)`` — as one XLA program:

* ``lax.scan`` over the optimisation steps, inside ``jit``; on CPU devices
  the step is first rewritten by :func:`atlasjax.xla_cpu.rewrite` (inside a
  loop XLA:CPU leaves the gradient's convolutions on a slow generic path,
  and its max pooling gradient costs more than the convolutions);
* ``vmap`` over items (and over ``config.attempts`` restarts per item); the
  network therefore sees one large batch per step;
* Adam from optax (``config.lr``, Lucid's 0.05 by default);
* the model runs only up to the deepest layer the objective reads
  (``layers=objective.layers``);
* item ``i`` uses the key ``fold_in(fold_in(key, item_ids[i]), attempt)``, so
  its image does not depend on ``N``, on chunking or on sharding;
* after the last step each attempt is scored by the objective on its final,
  untransformed image, and the best attempt is kept on device;
* large batches are processed in chunks of at most ``chunk_size`` items (each
  chunk is padded to the same shape, so one compilation serves all chunks),
  and each chunk is sharded across ``devices`` (default: all local devices)
  along the item axis with :mod:`jax.sharding`.

The jitted program is cached per ``(model, make, config, param, transforms,
optimizer, devices)``: calling :func:`render` again with new ``args``, a new
``key`` or new ``params`` of the same shapes does not recompile. ``make`` is
compared by structure (:mod:`atlasjax.optvis.family`: same code, equal
captured values), so rebuilding the same lambda, e.g. by re-running a notebook
cell, does not recompile either.

Which image parameterization and transforms are used: by default they are
built from :class:`RenderConfig` (``param``, ``decorrelate``, ``alpha``,
``transforms`` preset names); passing ``param=`` (an
:class:`~atlasjax.optvis.param.ImageParam`) or ``transforms=`` (a
:data:`~atlasjax.optvis.transform.Transform`) to :func:`render` overrides them.

Optional ReLU gradient redirection (Lucid's ``redirected_relu_grad``, on for
the first ``config.redirect_relu_steps`` steps): where the objective reads a
layer ``L`` whose pre-activation the model declares (``model.relu_twins``:
``L == relu(pre)``), the renderer requests the
pre-activation and applies :func:`redirected_relu` itself. ReLUs *inside* the
network keep their ordinary gradient: the model protocol deliberately has no
hooks to swap them.

Input size: the network sees what the transforms make of a ``size``-pixel
image, unpadded. Where that is below ``model.min_size``, :func:`build` raises a
:class:`RenderError` naming the sizes and the smallest ``size`` that works
(padding up to the minimum would add pixels that never get gradient and cost
network time).

Precision (``config.precision``): ``"float32"`` runs convolutions and matmuls
at full fp32 (``jax.default_matmul_precision("highest")``; on GPUs JAX's
default would otherwise use TF32), ``"tensorfloat32"`` allows TF32 on
hardware that has it, and ``"bfloat16"`` runs the network (parameters and
activations) in bfloat16 while the image parameterization, the objective and
Adam stay in float32. On CPUs the first two are the same program.

Transparency (``config.alpha_map``, MaCo's figures): the renderer adds a zero
offset to each item's images before the transforms and differentiates the
loss with respect to it too; ``|∂loss/∂image|`` summed over the steps is
returned per pixel and channel as ``RenderResult.alpha_map``. The offset is
zero, so the images and their optimisation are the same with or without it.

Starting images (``render(..., start=raw)``): per-item raw parameters to
start from instead of ``param.init`` (e.g. a photo's own phase for feature
accentuation), batched, chunked and sharded like ``args``.

Progress: with ``config.progress_every = k > 0``, every ``k`` steps a
``jax.debug.callback`` reports ``(chunk, step, mean objective)`` to
``progress`` (default: a line on stderr); nothing synchronises with the host
on the other steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from atlasjax import compilation_cache
from atlasjax import display
from atlasjax import xla_cpu
from atlasjax.models import base
from atlasjax.optvis import family as family_lib
from atlasjax.optvis import objectives as objectives_lib
from atlasjax.optvis import param as param_lib
from atlasjax.optvis import registry
from atlasjax.optvis import transform as transform_lib

PyTree = Any
MakeObjective = Callable[[PyTree], objectives_lib.Objective]

DEFAULT_LR = 0.05
# Lucid redirects ReLU gradients for the first 16 steps.
LUCID_REDIRECT_STEPS = 16
# Automatic chunking: at most this many optimised pixels per chunk (64 images
# of 128 × 128), which bounds activation memory for the backward pass.
AUTO_CHUNK_PIXELS = 64 * 128 * 128
# Background grey used to score images that have an alpha channel.
SCORE_BACKGROUND = 0.5
_BATCH_AXIS = "items"
# RenderConfig.precision → jax.default_matmul_precision (None: bfloat16 casts).
PRECISIONS = {"float32": "highest", "tensorfloat32": "tensorfloat32",
              "bfloat16": None}
LOGGER = logging.getLogger("atlasjax")


class Compile(NamedTuple):
  """One compilation of a render program (see :func:`cache_info`):
  ``seconds`` from tracing to executable; ``from_disk`` when XLA's work was
  loaded from the persistent cache (:mod:`atlasjax.compilation_cache`)."""
  family: str
  config: str
  seconds: float
  from_disk: bool = False


class CacheInfo(NamedTuple):
  """The renderer's caches: ``hits``/``misses`` of the in-process program
  cache (one entry per family × configuration × pieces × devices) and every
  XLA compilation this process ran (a persistent-cache load counts too, but
  takes a fraction of the time)."""
  hits: int
  misses: int
  compiles: tuple[Compile, ...]


_COMPILES: list[Compile] = []


class RenderError(ValueError):
  """A render configuration that cannot run; the message says the fix."""


@dataclasses.dataclass(frozen=True)
class RenderConfig:
  """How to render; hashable, so it keys the compilation cache.

  Attributes:
    size: image side in pixels.
    steps: Adam steps.
    lr: Adam learning rate.
    attempts: independent restarts per item; the one with the highest final
      objective is kept.
    chunk_size: items per compiled chunk; None picks one from
      :data:`AUTO_CHUNK_PIXELS`. Rounded up to a multiple of the device count.
      An explicit value pads smaller batches up to it, so an item renders
      bit-identically in any batch (the same compiled program runs).
    param: ``"fft"``, ``"pixel"``, ``"laplacian"``, ``"cppn"`` or ``"maco"``
      (Fel et al. 2023: phase only, natural-image magnitude).
    decorrelate: Lucid's colour decorrelation.
    alpha: optimise an alpha channel too (images come back RGBA; the
      transforms composite them over random noise).
    transforms: preset name: ``"standard"``, ``"distill2017"``, ``"atlas"``,
      ``"maco"`` (MaCo's crops) or ``"none"``.
    images_per_item: images optimised jointly per item (``B`` of the
      objective's activations; > 1 for diversity or interpolation).
    redirect_relu_steps: steps with ReLU gradient redirection (0 = off).
    progress_every: report progress every this many steps (0 = never).
    unroll: ``lax.scan`` unroll factor (compile time for dispatch; 1 is as
      fast as any on CPU and GPU in bench/RESULTS.md).
    precision: ``"float32"``, ``"tensorfloat32"`` or ``"bfloat16"`` (see
      the module docstring).
    cpu_rewrite: on CPU devices, run the step through
      :func:`atlasjax.xla_cpu.rewrite` (canonical convolution layouts inside
      the loop, max pooling's gradient as static slices: 1.7× per GoogLeNet
      step); False compiles the step as written (an A/B switch, or a way
      out should a model use something the jaxpr rewrite cannot re-trace).
      No effect on GPU / TPU.
    loop: ``"scan"`` (one program per chunk, steps in ``lax.scan``) or
      ``"host"`` (a jitted, buffer-donating step per host iteration: no
      device-side loop, e.g. to inspect state between steps). Both run the
      same step program; ``"scan"`` is the faster on every backend measured.
    alpha_map: also return the accumulated ``|∂loss/∂image|`` per pixel
      (MaCo's transparency map; see the module docstring).
  """

  size: int = 128
  steps: int = 512
  lr: float = DEFAULT_LR
  attempts: int = 1
  chunk_size: int | None = None
  param: str = "fft"
  decorrelate: bool = True
  alpha: bool = False
  transforms: str = "standard"
  images_per_item: int = 1
  redirect_relu_steps: int = LUCID_REDIRECT_STEPS
  progress_every: int = 0
  unroll: int = 1
  precision: str = "float32"
  cpu_rewrite: bool = True
  loop: str = "scan"
  alpha_map: bool = False

  def image_param(self) -> param_lib.ImageParam:
    """The image parameterization these settings describe."""
    return param_lib.image(self.size, self.images_per_item, self.param,
                           decorrelate=self.decorrelate, alpha=self.alpha)

  def transform(self) -> transform_lib.Transform:
    """The transforms preset these settings describe."""
    return transform_lib.preset(self.transforms, self.size, alpha=self.alpha)


@dataclasses.dataclass
class RenderResult:
  """Rendered images and their scores (device arrays).

  Attributes:
    images: ``[N, size, size, C]`` in [0, 1] (C = 3, or 4 with alpha); with
      ``images_per_item > 1``, ``[N, B, size, size, C]``.
    values: ``[N]`` objective of the kept attempt on its final image (no
      transforms).
    losses: ``[N, steps]`` the minimised loss, ``-objective`` on the
      transformed images, at each step of the kept attempt.
    attempt_values: ``[N, attempts]`` final objective of every attempt.
    alpha_map: with ``config.alpha_map``, ``Σ_steps |∂loss/∂image|`` of the
      kept attempt, shaped like ``images``; else None.
  """

  images: jax.Array
  values: jax.Array
  losses: jax.Array
  attempt_values: jax.Array
  alpha_map: jax.Array | None = None

  def _repr_png_(self) -> bytes:
    """Jupyter shows the images as one contact sheet (what
    :func:`atlasjax.display.save` writes)."""
    return display.sheet_png(self)


# ----------------------------------------------------------------------------
# ReLU gradient redirection.

def cast_params(params: PyTree, precision: str) -> PyTree:
  """``params`` as the network runs them at ``precision`` (floats in bfloat16
  for ``"bfloat16"``, unchanged otherwise)."""
  if precision != "bfloat16":
    return params
  return jax.tree_util.tree_map(
      lambda x: x.astype(jnp.bfloat16)
      if jnp.issubdtype(x.dtype, jnp.floating) else x, params)


def network_outputs(model: base.Model, params: PyTree, images: jax.Array,
                    layers: Sequence[str], precision: str) -> dict[str, jax.Array]:
  """``model.apply`` as the renderer runs it at ``precision``, outputs in float32.

  Activations computed outside a render and compared with the render's own
  (feature accentuation's target) must round the same way: at
  ``"bfloat16"`` a float32 target sits ~1e-2 relative away from the
  render's activations of the very same image, and a large regularization
  weight then chases rounding noise; on GPUs JAX's default matmul precision
  (TF32) differs from the renderer's ``"float32"`` likewise.
  """
  matmul = PRECISIONS[precision]
  with (jax.default_matmul_precision(matmul) if matmul is not None
        else contextlib.nullcontext()):
    if precision == "bfloat16":
      params, images = cast_params(params, precision), images.astype(jnp.bfloat16)
    outs = model.apply(params, images, layers=tuple(layers))
  return {k: v.astype(jnp.float32) for k, v in outs.items()}


@jax.custom_vjp
def redirected_relu(x: jax.Array, active: jax.Array) -> jax.Array:
  """``relu(x)`` whose gradient, while ``active``, lets some signal through.

  Lucid's ``redirected_relu_grad``: for each image (axis 0) whose ordinary ReLU
  gradient is entirely zero, pass the incoming gradient instead, except where
  it would push an already negative input lower. ``active`` is a traced bool,
  so one compiled program switches it off after the first steps.
  """
  del active
  return jax.nn.relu(x)


def _redirected_relu_fwd(x, active):
  return jax.nn.relu(x), (x, active)


def _redirected_relu_bwd(res, g):
  x, active = res
  relu_grad = jnp.where(x < 0, 0.0, g)
  # g is the gradient of the *loss*; g > 0 means descent lowers the input.
  redirected = jnp.where((x < 0) & (g > 0), 0.0, g)
  axes = tuple(range(1, x.ndim))
  magnitude = jnp.sqrt(jnp.sum(relu_grad ** 2, axis=axes, keepdims=True))
  result = jnp.where(magnitude > 0, relu_grad, redirected)
  return jnp.where(active, result, relu_grad), None


redirected_relu.defvjp(_redirected_relu_fwd, _redirected_relu_bwd)


# ----------------------------------------------------------------------------
# The compiled renderer.

def _pre_relu_twins(model: base.Model, layers: Sequence[str]) -> dict[str, str]:
  """The declared pre-activations (``model.relu_twins``) of ``layers``."""
  return {l: model.pre_relu(l) for l in layers if model.pre_relu(l) is not None}


def _view_side(transform, image_shape) -> int:
  """Smaller side of ``transform``'s output for one ``[H, W, C]`` image."""
  out = jax.eval_shape(transform_lib.at_progress(transform, 0.0), jax.random.PRNGKey(0),
                       jax.ShapeDtypeStruct(tuple(image_shape), jnp.float32))
  return min(out.shape[-3:-1])


def check_input_size(model: base.Model, config: "RenderConfig",
                     image_param: param_lib.ImageParam,
                     transform: transform_lib.Transform,
                     custom_transform: bool = False) -> None:
  """Raises :class:`RenderError` when the network would see fewer pixels
  per side than ``model.min_size`` (transformed, or for the final score)."""
  shape = param_lib.output_shape(image_param)[1:]
  side = _view_side(transform, shape)
  scored = min(shape[:2])
  if side >= model.min_size and scored >= model.min_size:
    return
  problem = (f"render: {model.name} needs inputs of at least {model.min_size} px "
             f"per side, but ")
  if custom_transform:
    raise RenderError(problem + f"the given transforms turn {shape[0]}×{shape[1]} px "
                      f"images into {side} px views; render larger images or use "
                      "transforms that keep more pixels.")
  # Presets are built for one size: rebuild them for each candidate size.
  needed = shape[0]
  while needed < 16 * max(model.min_size, 1) and min(_view_side(
      transform_lib.preset(config.transforms, needed, alpha=config.alpha),
      (needed, needed) + shape[2:]), needed) < model.min_size:
    needed += 1
  raise RenderError(
      problem + f"{config.transforms!r} transforms turn {shape[0]}×{shape[1]} px "
      f"images into {side} px views; render at size={needed} or more "
      "(RenderConfig.size) or use transforms that keep more pixels.")


def _drop_alpha(images: jax.Array) -> jax.Array:
  if images.shape[-1] == 4:
    rgb, a = images[..., :3], images[..., 3:]
    return a * rgb + (1 - a) * SCORE_BACKGROUND
  return images


def _chunk_size(config: RenderConfig, n: int, n_dev: int) -> int:
  chunk = config.chunk_size
  if chunk is None:
    per_item = config.size ** 2 * config.attempts * config.images_per_item
    chunk = max(1, min(AUTO_CHUNK_PIXELS // per_item, n))
    chunk = -(-n // -(-n // chunk))   # equal chunks: least padding
  # An explicit chunk_size is kept even for fewer items (the chunk is padded):
  # every call then runs the same compiled program, so an item's image is
  # bit-identical whatever batch it is rendered in. Programs for different
  # batch shapes round differently, and the optimisation amplifies that.
  return n_dev * math.ceil(max(1, chunk) / n_dev)


def _print_progress(chunk: int, step: int, value: float) -> None:
  print(f"render: chunk {chunk} step {step} mean objective {value:.4g}",
        file=sys.stderr, flush=True)


class Renderer:
  """A compiled renderer for one objective family and configuration.

  Build it with :func:`build` (cached); call :meth:`run_chunk` per chunk or use
  :func:`render`. ``fn`` is the jitted function
  ``(params, key, item_ids [M], args [M, ...], chunk_index) ->
  (images, values, losses, attempt_values)``.
  """

  def __init__(self, model: base.Model, make: MakeObjective,
               config: RenderConfig, image_param: param_lib.ImageParam,
               transform: transform_lib.Transform,
               optimizer: optax.GradientTransformation,
               devices: tuple[jax.Device, ...]):
    self.model, self.make, self.config = model, make, config
    self.param, self.transform, self.optimizer = image_param, transform, optimizer
    self.devices = devices
    self.mesh = Mesh(np.asarray(devices), (_BATCH_AXIS,)) if len(devices) > 1 else None
    self.progress: Callable[[int, int, float], None] = _print_progress
    # XLA:CPU canonicalises convolution layouts only outside loops, and its
    # max pooling gradient is slow: the rewrite fixes both for the loop body
    # (together 1.8× per GoogLeNet render step, bench/RESULTS.md).
    self._loop_step = (xla_cpu.loop_body(self.step, devices[0].platform)
                       if config.cpu_rewrite else self.step)
    self.fn = jax.jit(self._run_with_precision)
    self._executables: dict[Any, Any] = {}

  # -- sharding helpers ------------------------------------------------------
  def shard(self, tree, replicate: bool = False):
    """Places ``tree`` on the devices: split along axis 0, or replicated."""
    if self.mesh is None:
      return jax.device_put(tree, self.devices[0])
    sharding = NamedSharding(self.mesh, P() if replicate else P(_BATCH_AXIS))
    return jax.device_put(tree, sharding)

  def _per_device(self, fn, in_specs):
    """``fn``, batched over items on axis 0, run on each device's own items.

    Items are independent, so with several devices each runs ``fn`` on its
    shard under ``shard_map`` (``in_specs``: ``P(batch)`` or ``P()`` per
    argument). Left to the SPMD partitioner, the parameterization's inverse
    FFT was all-gathered and run whole on every device (seen in the
    optimized HLO of a MaCo render), and on CPU the gathered copy's layout trips XLA's
    FFT kernel (``RET_CHECK ... IsMonotonicWithDim0Major``), so a sharded
    MaCo render failed outright.
    """
    if self.mesh is None:
      return fn
    return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs,
                         out_specs=P(_BATCH_AXIS))

  def _constrain(self, tree):
    if self.mesh is None:
      return tree
    sharding = NamedSharding(self.mesh, P(_BATCH_AXIS))
    return jax.tree_util.tree_map(
        lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)

  # -- the traced program ----------------------------------------------------
  def _activations(self, params, obj, x, redirect):
    """Model outputs the objective reads (optionally via redirected ReLUs)."""
    if not obj.layers:
      return {}
    twins = _pre_relu_twins(self.model, obj.layers) if redirect is not None else {}
    request = tuple(dict.fromkeys(twins.get(l, l) for l in obj.layers))
    if self.config.precision == "bfloat16":
      x = x.astype(jnp.bfloat16)
      try:
        outs = self.model.apply(params, x, layers=request)
      except TypeError as err:   # e.g. a conv of float32 inputs with bf16 weights
        raise RenderError(
            f"render: precision='bfloat16' needs a model that computes in its "
            f"input's dtype, but {self.model.name} mixes dtypes "
            f"({str(err).splitlines()[0][:120]}); use precision='float32' or "
            "'tensorfloat32', or keep images.dtype in the model's input "
            "conversion.") from None
    else:
      outs = self.model.apply(params, x, layers=request)
    acts = {k: v.astype(jnp.float32) for k, v in outs.items()}
    for layer, twin in twins.items():
      acts[layer] = redirected_relu(outs[twin], redirect)
    return acts

  def _view(self, raw, key, step, offset=None):
    """One item's images and their transformed views (keys as per item).

    ``offset`` (zeros, for ``alpha_map``) is added to the images so that the
    loss's gradient with respect to it is ``∂loss/∂image``. A transform that
    returns several views per image (MaCo's crops) gives ``B·K`` views.
    """
    # Named scopes label the HLO metadata, so XLA's profile of a step can be
    # read by part (bench/render_profile.py).
    with jax.named_scope("parameterization"):
      images = self.param.to_rgb(raw)
      if offset is not None:
        images = images + offset
    return images, self._transform(images, key, step)

  def _transform(self, images, key, step):
    """The step's transformed views of one item's ``[B, H, W, C]`` images.

    Image ``b`` of the item always gets key ``b`` of the step, so a reference
    photo paired with it (:meth:`_reference_views`) is transformed the same.
    """
    with jax.named_scope("transforms"):
      keys = jax.random.split(jax.random.fold_in(key, step), images.shape[0])
      progress = step / max(self.config.steps - 1, 1)
      views = jax.vmap(transform_lib.at_progress(self.transform, progress))(keys, images)
      return views.reshape((-1,) + views.shape[-3:])

  def _photos(self, args, slot, image_shape):
    """Each item's reference photo of ``slot``, as its ``[B, H, W, C]`` images.

    The photo is resized to the image size and, for RGBA renders, given an
    opaque alpha channel, so that the transforms treat it like the image.
    """
    photos = jax.vmap(lambda a: jnp.asarray(
        dict(self.make(a).references)[slot], jnp.float32))(args)
    b, h, w, c = image_shape[-4:]
    if photos.shape[1:3] != (h, w):
      photos = jax.vmap(lambda p: jax.image.resize(p, (h, w, 3), "linear"))(photos)
    if c == 4:
      photos = jnp.concatenate([photos, jnp.ones_like(photos[..., :1])], -1)
    return jnp.broadcast_to(photos[:, None], photos.shape[:1] + (b,) + photos.shape[1:])

  def _with_references(self, obj, args, x, images, transform):
    """``x`` [M, V, …] with every reference slot's views appended on axis 1,
    and the slot names in order (none: ``x`` unchanged)."""
    slots = tuple(slot for slot, _ in obj.references)
    parts = [x] + [transform(self._photos(args, slot, images.shape)) for slot in slots]
    return (jnp.concatenate(parts, axis=1) if slots else x), slots

  def _split_references(self, acts, slots, views):
    """Undoes :meth:`_with_references` on activations ``[M, V·(1+R), …]``:
    the image's under their layer names, each photo's under ``ref(layer, slot)``."""
    out = {}
    for layer, a in acts.items():
      out[layer] = a[:, :views]
      for i, slot in enumerate(slots, start=1):
        out[objectives_lib.ref(layer, slot)] = a[:, i * views:(i + 1) * views]
    return out

  def _redirect(self, step):
    """Whether ReLU gradients are redirected at ``step`` (None: never)."""
    if self.config.redirect_relu_steps <= 0:
      return None
    return step < self.config.redirect_relu_steps

  def _loss(self, raw, arg, key, step, params):
    """One item's loss (``-objective`` on its transformed views), computed
    alone: the reference :meth:`_losses` is tested against (no photos)."""
    obj = self.make(arg)
    images, x = self._view(raw, key, step)
    acts = self._activations(params, obj, x, self._redirect(step))
    acts[objectives_lib.INPUT] = images
    return -obj(acts)

  def _losses(self, raw, args, keys, step, params, offset=None):
    """All items' losses ``[M]``, with ONE network call on the whole batch.

    Equal to a ``vmap`` of one item's loss, but the network runs on a plain
    ``[M·B, H, W, C]`` batch rather than under ``vmap``: batching rules would
    otherwise give pooling and LRN an extra item axis (rank-5 windows), which
    XLA:CPU runs markedly slower than the same ops on a rank-4 batch.
    Reference photos join that batch, transformed with their item's keys.
    """
    batch = P(_BATCH_AXIS)
    images, x = self._per_device(jax.vmap(self._view, in_axes=(0, 0, None, 0)),
                                 (batch, batch, P(), batch))(raw, keys, step, offset)
    obj = self.make(jax.tree_util.tree_map(lambda a: a[0], args))   # the structure
    views = x.shape[1]
    transform = lambda photos: self._per_device(
        jax.vmap(self._transform, in_axes=(0, 0, None)), (batch, batch, P()))(
            photos, keys, step)
    x, slots = self._with_references(obj, args, x, images, transform)
    m, n = x.shape[:2]
    redirect = self._redirect(step)
    with jax.named_scope("network"):
      acts = self._activations(params, obj, x.reshape((m * n,) + x.shape[2:]), redirect)
    acts = {k: v.reshape((m, n) + v.shape[1:]) for k, v in acts.items()}
    acts = self._split_references(acts, slots, views)

    def one(arg, acts, images):
      acts = dict(acts)
      acts[objectives_lib.INPUT] = images
      return -self.make(arg)(acts)
    with jax.named_scope("objective"):
      return jax.vmap(one)(args, acts, images)

  def _score(self, images, arg, params):
    """One item's objective on its final images, untransformed."""
    obj = self.make(arg)
    x = _drop_alpha(images)
    one = jax.tree_util.tree_map(lambda a: a[None], arg)
    x, slots = self._with_references(obj, one, x[None], images[None],
                                     lambda photos: _drop_alpha(photos))
    acts = self._activations(params, obj, x[0], None)
    acts = {k: v[None] for k, v in acts.items()}
    acts = {k: v[0] for k, v in self._split_references(acts, slots, images.shape[0]).items()}
    acts[objectives_lib.INPUT] = images
    return obj(acts)

  def _report(self, chunk, step, value):
    self.progress(int(chunk), int(step), float(value))

  def init(self, key, item_ids, args):
    """Expands items × attempts; returns ``(raw, opt_state, args, loop_keys)``.

    With a ``make`` from :func:`render`'s ``start=``, ``args`` is
    ``(objective args, start raw)`` and the raw parameters are the latter.
    """
    n_att = self.config.attempts
    m = item_ids.shape[0]
    ids = jnp.repeat(item_ids, n_att)
    attempt = jnp.tile(jnp.arange(n_att), m)
    args = jax.tree_util.tree_map(lambda x: jnp.repeat(x, n_att, axis=0), args)
    keys = jax.vmap(lambda i, a: jax.random.fold_in(jax.random.fold_in(key, i), a)
                    )(ids, attempt)
    keys = self._constrain(keys)
    init_keys, loop_keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
    if isinstance(self.make, _Started):
      raw = args[1]
    else:
      raw = jax.vmap(self.param.init)(init_keys)
    raw = self._constrain(raw)
    return raw, jax.vmap(self.optimizer.init)(raw), args, loop_keys

  def step(self, raw, opt_state, args, loop_keys, step, params, alpha=None):
    """One Adam step for every (item, attempt); returns the new state and losses.

    With ``alpha`` (the running ``Σ |∂loss/∂image|``, ``[M, B, H, W, C]``)
    the updated sum is returned fourth.
    """
    # Items are independent, so the gradient of the summed loss w.r.t. every
    # item's parameters is that item's own gradient.
    offset = None if alpha is None else jnp.zeros_like(alpha)
    grad_fn = jax.value_and_grad(
        lambda r, o: (lambda l: (l.sum(), l))(
            self._losses(r, args, loop_keys, step, params, o)),
        argnums=(0, 1), has_aux=True)
    (_, loss), (grads, image_grads) = grad_fn(raw, offset)
    with jax.named_scope("optimizer"):
      updates, opt_state = jax.vmap(self.optimizer.update)(grads, opt_state, raw)
      new = (optax.apply_updates(raw, updates), opt_state, loss)
    return new if alpha is None else new + (alpha + jnp.abs(image_grads),)

  def _alpha_init(self, raw):
    """Zeros shaped like every (item, attempt)'s images, or None."""
    if not self.config.alpha_map:
      return None
    shape = jax.eval_shape(jax.vmap(self.param.to_rgb), raw)
    return jnp.zeros(shape.shape, shape.dtype)

  def network_params(self, params):
    """``params`` as the network runs them (cast to bfloat16 if asked)."""
    return cast_params(params, self.config.precision)

  def _run_with_precision(self, params, key, item_ids, args, chunk_index):
    precision = PRECISIONS[self.config.precision]
    if precision is None:
      return self._run(self.network_params(params), key, item_ids, args, chunk_index)
    with jax.default_matmul_precision(precision):
      return self._run(params, key, item_ids, args, chunk_index)

  def _run(self, params, key, item_ids, args, chunk_index):
    cfg = self.config
    raw, opt_state, args, loop_keys = self.init(key, item_ids, args)

    def step_fn(carry, step):
      raw, opt_state, alpha = carry
      raw, opt_state, loss, *alpha = self._loop_step(
          raw, opt_state, args, loop_keys, step, params, alpha)
      if cfg.progress_every > 0:
        jax.lax.cond(
            (step + 1) % cfg.progress_every == 0,
            lambda: jax.debug.callback(self._report, chunk_index, step + 1,
                                       -jnp.mean(loss)),
            lambda: None)
      return (raw, opt_state, alpha[0] if alpha else None), loss

    (raw, _, alpha), losses = jax.lax.scan(
        step_fn, (raw, opt_state, self._alpha_init(raw)), jnp.arange(cfg.steps),
        unroll=cfg.unroll)
    return self._finish(params, raw, losses, args, item_ids, alpha)

  def _finish(self, params, raw, losses, args, item_ids, alpha=None):
    """Scores every attempt's final image and keeps each item's best."""
    cfg = self.config
    n_att = cfg.attempts
    m = item_ids.shape[0]
    images = self._per_device(jax.vmap(self.param.to_rgb), P(_BATCH_AXIS))(raw)
    values = jax.vmap(self._score, in_axes=(0, 0, None))(images, args, params)
    values = values.reshape(m, n_att)
    best = best_finite_attempt(values, images.reshape((m, n_att) + images.shape[1:]))
    pick = lambda x: jnp.take_along_axis(
        x.reshape((m, n_att) + x.shape[1:]),
        best.reshape((m, 1) + (1,) * (x.ndim - 1)), axis=1)[:, 0]
    images = pick(images)
    alpha = None if alpha is None else pick(alpha)
    if cfg.images_per_item == 1:
      images = images[:, 0]
      alpha = None if alpha is None else alpha[:, 0]
    return images, pick(values.reshape(-1)), pick(losses.T), values, alpha

  def lower(self, params, key, item_ids, args):
    """``jax.jit(...).lower`` of one chunk, e.g. for ``cost_analysis``."""
    return self.fn.lower(params, key, item_ids, args, jnp.int32(0))

  def run_chunk(self, params, key, item_ids, args, chunk_index=0):
    """Renders one chunk of items (device arrays; no host sync)."""
    if self.config.loop == "host":
      return self._run_host(params, key, item_ids, args, chunk_index)
    inputs = (params, key, item_ids, args, jnp.int32(chunk_index))
    return self.compiled(*inputs)(*inputs)

  def describe(self, args) -> tuple[str, str]:
    """``(family name, config summary)`` of a chunk with ``args``."""
    try:
      name = self.make(jax.tree_util.tree_map(lambda a: a[0], args)).name
    except Exception:  # pylint: disable=broad-except  # a name is cosmetic
      name = ""
    cfg = self.config
    return (name or repr(self.make),
            f"{self.model.name} size={cfg.size} steps={cfg.steps} param={cfg.param} "
            f"transforms={cfg.transforms} precision={cfg.precision}")

  def compiled(self, *inputs):
    """The XLA executable for inputs of these shapes, compiled once and
    logged with its time (ahead of time: no step runs while it is timed)."""
    leaves, tree = jax.tree_util.tree_flatten(inputs)
    signature = (tree, tuple((np.shape(x), jnp.result_type(x),
                              getattr(x, "sharding", None)) for x in leaves))
    if signature not in self._executables:
      start, loaded = time.perf_counter(), compilation_cache.hits()
      self._executables[signature] = self.fn.lower(*inputs).compile()
      record = Compile(*self.describe(inputs[3]), time.perf_counter() - start,
                       compilation_cache.hits() > loaded)
      _COMPILES.append(record)
      LOGGER.info("render: compiled %s (%s) in %.1f s%s", *record[:3],
                  " (from the persistent cache)" if record.from_disk else "")
    return self._executables[signature]

  def _precise(self, fn):
    """``fn`` traced under the configured matmul precision."""
    precision = PRECISIONS[self.config.precision]
    if precision is None:
      return fn
    def wrapped(*a):
      with jax.default_matmul_precision(precision):
        return fn(*a)
    return wrapped

  @functools.cached_property
  def _host_fns(self):
    return (jax.jit(self.init),
            # The image parameters and Adam's state are replaced every step:
            # donating them lets XLA write the new ones in place.
            jax.jit(self._precise(self._loop_step), donate_argnums=(0, 1)),
            jax.jit(self._precise(self._finish)))

  def _run_host(self, params, key, item_ids, args, chunk_index):
    """``loop="host"``: one jitted, buffer-donating step per host iteration."""
    init, step, finish = self._host_fns
    params = self.network_params(params)
    raw, opt_state, args, keys = init(key, item_ids, args)
    alpha = self._alpha_init(raw)
    losses = []
    for s in range(self.config.steps):
      raw, opt_state, loss, *acc = step(raw, opt_state, args, keys, jnp.int32(s),
                                        params, alpha)
      alpha = acc[0] if acc else None
      losses.append(loss)
      if self.config.progress_every and (s + 1) % self.config.progress_every == 0:
        self._report(chunk_index, s + 1, -jnp.mean(loss))
    return finish(params, raw, jnp.stack(losses), args, item_ids, alpha)


def best_finite_attempt(values: jax.Array, images: jax.Array) -> jax.Array:
  """``[M]`` index of each item's best attempt among those whose objective
  ``values [M, A]`` and ``images [M, A, ...]`` are finite (NaN never wins)."""
  finite = jnp.isfinite(values) & jnp.all(
      jnp.isfinite(images).reshape(images.shape[:2] + (-1,)), axis=-1)
  return jnp.argmax(jnp.where(finite, values, -jnp.inf), axis=1)


def nonfinite_items(result: "RenderResult") -> np.ndarray:
  """Indices of the items whose kept objective value or image is not finite."""
  images = np.asarray(result.images)
  finite = np.isfinite(np.asarray(result.values)) & np.isfinite(
      images.reshape(images.shape[0], -1)).all(axis=1)
  return np.flatnonzero(~finite)


def _check_finite(result: "RenderResult", ids: np.ndarray) -> None:
  """Raises :class:`RenderError` naming every item that rendered to NaN/inf."""
  bad = nonfinite_items(result)
  if len(bad):
    raise RenderError(
        f"render: non-finite objective or image for item {', '.join(map(str, ids[bad][:10]))}"
        f"{' …' if len(bad) > 10 else ''} ({len(bad)} of {len(ids)}); check that "
        "item's objective arguments (e.g. a NaN direction) or lower the learning "
        "rate. Pass check_finite=False to keep the others and drop these.")


@functools.lru_cache(maxsize=64)
def build(model: base.Model, make: MakeObjective, config: RenderConfig,
          image_param: param_lib.ImageParam | None = None,
          transform: transform_lib.Transform | None = None,
          optimizer: optax.GradientTransformation | None = None,
          devices: tuple[jax.Device, ...] | None = None,
          pieces: Any = None) -> Renderer:
  """The (cached) :class:`Renderer` for these static choices.

  ``pieces`` only keys the cache: the registered factories that
  ``config.param`` / ``config.transforms`` name (:func:`custom_pieces`), so
  re-registering a name with other code builds a new renderer.
  """
  del pieces
  if config.attempts < 1 or config.steps < 1 or config.images_per_item < 1:
    raise ValueError(f"attempts, steps and images_per_item must be ≥ 1: {config}")
  if config.loop not in ("scan", "host"):
    raise RenderError(f"RenderConfig.loop must be 'scan' or 'host', got {config.loop!r}")
  if config.precision not in PRECISIONS:
    raise RenderError(f"RenderConfig.precision must be one of {tuple(PRECISIONS)}, "
                      f"got {config.precision!r}")
  image_param = image_param if image_param is not None else config.image_param()
  custom_transform = transform is not None
  transform = transform if transform is not None else config.transform()
  check_input_size(model, config, image_param, transform, custom_transform)
  return Renderer(
      model, make, config, image_param, transform,
      optimizer if optimizer is not None else optax.adam(config.lr),
      tuple(devices) if devices is not None else tuple(jax.local_devices()))


def custom_pieces(config: RenderConfig) -> tuple:
  """The registered factories ``config``'s names resolve to, structurally
  keyed (:mod:`atlasjax.optvis.family`), or None for built-in names."""
  return tuple(
      None if name in builtins else family_lib.keyed(registry.lookup(kind, name))
      for kind, name, builtins in (
          ("param", config.param, registry.BUILTIN_PARAMS),
          ("transforms", config.transforms, registry.BUILTIN_TRANSFORMS)))


_SHAPES: dict[Any, dict[str, tuple[int, ...]]] = {}


def _checked(model, params, make, args, config, param, transforms, pieces) -> None:
  """:func:`check` before the first compile of a family; later calls check
  only the new args' indices against the shapes found then."""
  key = (model, make, config, param, transforms, pieces,
         jax.tree_util.tree_structure(args))
  try:
    shapes = _SHAPES.get(key)
  except TypeError:   # an unhashable piece: check every time
    shapes, key = None, None
  if shapes is None:
    shapes = check(model, params, make, args, config, param=param,
                   transforms=transforms)
    if key is not None:
      _SHAPES[key] = shapes
  elif args is not None:
    for obj in _concrete_objectives(make, args, _num_items(args)):
      _check_bounds(obj, shapes)


def cache_info() -> CacheInfo:
  """Hits and misses of the in-process program cache, and every compile."""
  info = build.cache_info()
  return CacheInfo(info.hits, info.misses, tuple(_COMPILES))


def cache_clear() -> None:
  """Empties the in-process program cache and the compile record."""
  build.cache_clear()
  _COMPILES.clear()
  _SHAPES.clear()


@functools.lru_cache(maxsize=64)
def _ignore_arg(make: Callable[[], objectives_lib.Objective]) -> MakeObjective:
  return lambda arg: make()


@dataclasses.dataclass(frozen=True)
class _Started:
  """``make`` of items whose args are ``(objective args, start raw)``."""
  make: MakeObjective

  def __call__(self, arg):
    return self.make(arg[0])


# ----------------------------------------------------------------------------
# Checks before compiling.

ObjectiveError = objectives_lib.ObjectiveError


def _undeclared(obj: objectives_lib.Objective, key) -> ObjectiveError:
  """The error for an objective that read ``acts[key]`` without declaring it."""
  declared = ", ".join(repr(l) for l in obj.layers) or "none"
  return ObjectiveError(
      f"objective {obj.name or obj!r} reads acts[{key!r}] but declares layers "
      f"({declared}); declare it: Objective(fn, layers=(..., {key!r}))")


def _family(make, args):
  """``(make, args)`` with an Objective given directly turned into a family."""
  if isinstance(make, objectives_lib.Objective):
    if args is not None:
      raise ObjectiveError(
          "render got one Objective and args: pass a family arg -> Objective "
          "(e.g. lambda c: objectives.channel('mixed4a', c)) to batch over args")
    obj = make
    return (lambda: obj), None
  if not callable(make):
    raise ObjectiveError(f"render needs an Objective or a family arg -> Objective, "
                         f"got a {type(make).__name__}")
  return make, args


def _made(make, arg, given_args: bool) -> objectives_lib.Objective:
  """``make(arg)`` (``make()`` without args), checked to be an Objective."""
  try:
    obj = make(arg) if given_args else make()
  except TypeError as e:
    if not given_args and "positional argument" in str(e):
      raise ObjectiveError(
          f"render got a function that needs an argument ({str(e).splitlines()[0]}) "
          "and no args: an objective acts -> scalar must be wrapped as "
          "Objective(fn, layers=(...)); a family arg -> Objective needs args=") from None
    raise
  if not isinstance(obj, objectives_lib.Objective):
    what = "a function" if callable(obj) else f"a {type(obj).__name__}"
    raise ObjectiveError(
        f"the objective family returned {what}, not an Objective; wrap a function "
        "acts -> scalar as objectives.Objective(fn, layers=('layer', ...), name=...)")
  return obj


def _views_shape(transform, images) -> tuple[int, ...]:
  """``[B·V, h, w, c]``: the views the transform makes of ``images`` [B, …]."""
  def views(imgs):
    keys = jax.random.split(jax.random.PRNGKey(0), imgs.shape[0])
    out = jax.vmap(transform_lib.at_progress(transform, 0.0))(keys, imgs)
    return out.reshape((-1,) + out.shape[-3:])
  shape = jax.eval_shape(views, images).shape
  return (shape[0],) + shape[1:-1] + (3,) if shape[-1] == 4 else tuple(shape)


def activation_shapes(model: base.Model, params: PyTree, layers: Sequence[str],
                      config: RenderConfig = RenderConfig(), *,
                      param: param_lib.ImageParam | None = None,
                      transforms: transform_lib.Transform | None = None
                      ) -> dict[str, tuple[int, ...]]:
  """The shapes of ``acts`` an item's objective sees in a render (no compile).

  ``acts[layer]`` is ``[B·V, h, w, c]``: the ``B = images_per_item`` images
  times ``V`` views per image (1, or the crops of MaCo's transforms), at the
  size the transforms leave; ``acts["input"]`` is ``[B, size, size, C]``.
  """
  image_param = param if param is not None else config.image_param()
  transform = transforms if transforms is not None else config.transform()
  raw = jax.eval_shape(image_param.init, jax.random.PRNGKey(0))
  images = jax.eval_shape(image_param.to_rgb, raw)
  views = _views_shape(transform, images)
  outs = jax.eval_shape(lambda p, x: model.apply(p, x, layers=tuple(layers)),
                        params, jax.ShapeDtypeStruct(views, jnp.float32))
  shapes = {k: tuple(v.shape) for k, v in outs.items() if k in layers}
  shapes[objectives_lib.INPUT] = tuple(images.shape)
  return shapes


def _check_bounds(obj: objectives_lib.Objective, shapes) -> None:
  """Every recorded index within its layer's axis (concrete values only)."""
  for bound in obj.bounds:
    if bound.layer not in shapes:
      continue
    shape = shapes[bound.layer]
    axis = objectives_lib.BOUND_AXES[bound.axis]
    if len(shape) < 4 and bound.axis != "channel":
      raise ObjectiveError(f"objective {obj.name or '(unnamed)'}: {bound.layer!r} has shape "
                           f"{shape[1:]} per image, no spatial {bound.what}")
    try:
      value = np.asarray(bound.value)
    except (TypeError, jax.errors.ConcretizationTypeError):
      continue   # traced here; the concrete values were checked by the caller
    n = shape[axis]
    bad = value[(value >= n) | (value < -n)] if value.size else value
    if bad.size:
      where = (f"{bound.layer!r} has {n} channels" if bound.axis == "channel" else
               f"{bound.layer!r} is {shape[1]}×{shape[2]} under this render's size "
               "and transforms")
      raise ObjectiveError(
          f"objective {obj.name or '(unnamed)'}: {bound.what} {bad.reshape(-1)[0]} is out of range: "
          f"{where}, so it must be in 0…{n - 1}")


def _concrete_objectives(make, args, n: int):
  """The items' objectives built from concrete args, for their bounds: one
  call on the whole batch when the family allows it, else item by item."""
  try:
    return [_made(make, args, True)]
  except Exception:  # pylint: disable=broad-except  # a family of one item
    return [_made(make, jax.tree_util.tree_map(lambda a, i=i: np.asarray(a)[i], args),
                  True) for i in range(n)]


def _traced_leaf(make, args, avals) -> str | None:
  """The path of the ``args`` leaf that must be static: the first whose
  concrete value (the first item's) lets the family trace."""
  leaves, tree = jax.tree_util.tree_flatten_with_path(args)
  firsts = [np.asarray(v)[0] for _, v in leaves]
  for k, (path, _) in enumerate(leaves):
    def traced(acts, *free, k=k):
      values = list(free)
      values.insert(k, firsts[k])
      obj = make(jax.tree_util.tree_unflatten(tree, values))
      return obj.fn(acts)
    specs = [jax.ShapeDtypeStruct(f.shape, f.dtype)
             for i, f in enumerate(firsts) if i != k]
    try:
      jax.eval_shape(traced, avals, *specs)
    except Exception:  # pylint: disable=broad-except  # still failing: not this leaf
      continue
    return "args" + jax.tree_util.keystr(path)
  return None


def check(model: base.Model, params: PyTree, make: Callable[..., Any],
          args: PyTree = None, config: RenderConfig = RenderConfig(), *,
          param: param_lib.ImageParam | None = None,
          transforms: transform_lib.Transform | None = None
          ) -> dict[str, tuple[int, ...]]:
  """Checks an objective family for a render, without compiling anything.

  Raises :class:`~atlasjax.optvis.objectives.ObjectiveError` (one line) for a
  function where an Objective is expected, a layer the model does not have,
  an undeclared layer read, a value that is not a scalar, an index out of
  range (:class:`~atlasjax.optvis.objectives.Bound`), or Python control flow
  on an argument that varies per item. :func:`render` runs it before its
  first compile of a family; call it yourself to fail early (e.g. when a
  config is built). Returns the shapes the objective sees
  (:func:`activation_shapes`).
  """
  make, args = _family(make, args)
  given = args is not None
  first = jax.tree_util.tree_map(lambda a: np.asarray(a)[0], args) if given else None
  obj = _made(make, first, given)
  model.check_layers(obj.layers)
  shapes = activation_shapes(model, params, obj.layers, config, param=param,
                             transforms=transforms)
  objs = _concrete_objectives(make, args, _num_items(args)) if given else [obj]
  for o in objs:
    _check_bounds(o, shapes)
  avals = {k: jax.ShapeDtypeStruct(v, jnp.float32) for k, v in shapes.items()}
  for slot, photo in obj.references:
    for layer in obj.layers:
      avals[objectives_lib.ref(layer, slot)] = avals[layer]
  _check_value(make, first, given, avals, args)
  return shapes


def _check_value(make, first, given: bool, avals, args) -> None:
  """Traces one item's objective on abstract activations: declared layers
  only, a scalar value, no Python control flow on per-item arguments."""
  def value(arg, acts):
    obj = make(arg) if given else make()
    try:
      return obj.fn(acts)
    except KeyError as e:
      if e.args and isinstance(e.args[0], str) and e.args[0] not in acts:
        raise _undeclared(obj, e.args[0]) from None
      raise
  spec = (jax.tree_util.tree_map(
      lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), first)
          if given else None)
  try:
    out = jax.eval_shape(value, spec, avals)
  except jax.errors.ConcretizationTypeError as e:
    leaf = _traced_leaf(make, args, avals) if given else None
    what = leaf or "a per-item argument"
    raise ObjectiveError(
        f"the objective family uses {what} as a Python value (if/int()/range/a "
        f"static hyperparameter: {str(e).splitlines()[0][:100]}); it must be static "
        "there: close over it (one compile per value) or compute with jnp") from None
  except (TypeError, ValueError, IndexError) as e:
    if isinstance(e, ObjectiveError):
      raise
    obj = _made(make, first, given)
    seen = ", ".join(f"{k} {list(avals[k].shape)}" for k in obj.layers if k in avals)
    raise ObjectiveError(
        f"objective {obj.name or obj!r} fails on the activations it reads ({seen}): "
        f"{type(e).__name__}: {str(e).splitlines()[0][:160]}") from None
  if out.shape != ():
    name = _made(make, first, given).name or "(unnamed)"
    raise ObjectiveError(
        f"objective {name} returns an array of shape {tuple(out.shape)}, not a "
        "scalar: reduce it, e.g. with .mean() or .sum()")


def _num_items(args) -> int:
  leaves = jax.tree_util.tree_leaves(args)
  if not leaves:
    raise ValueError("args has no arrays; pass args=None for a fixed objective")
  n = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
  if len(n) != 1 or None in n:
    raise ValueError(f"every leaf of args needs the same leading (item) axis; got {n}")
  return n.pop()


def render(model: base.Model, params: PyTree, make: Callable[..., Any],
           args: PyTree = None, config: RenderConfig = RenderConfig(),
           key: jax.Array | None = None, *,
           param: param_lib.ImageParam | None = None,
           transforms: transform_lib.Transform | None = None,
           optimizer: optax.GradientTransformation | None = None,
           item_ids: Sequence[int] | jax.Array | None = None,
           devices: Sequence[jax.Device] | None = None,
           progress: Callable[[int, int, float], None] | None = None,
           start: PyTree = None,
           check_finite: bool = True) -> RenderResult:
  """Renders ``N`` objectives ``make(args[i])`` as one batched program.

  Length: most of it is the argument list below; the body is ~35 lines of
  named steps (build, chunk, run, gather, check).

  Args:
    model: a :class:`~atlasjax.models.base.Model`.
    params: its parameters.
    make: ``arg -> Objective`` for one item (``arg`` has ``args``' structure
      without the leading axis). With ``args=None``, ``make()`` takes no
      argument and one image is rendered.
    args: pytree of arrays with a leading item axis ``N``.
    config: a :class:`RenderConfig`.
    key: base PRNG key (default ``PRNGKey(0)``).
    param: override the image parameterization from ``config``.
    transforms: override the transforms preset from ``config``.
    optimizer: override Adam(``config.lr``).
    item_ids: integer id of each item for its PRNG key (default ``0..N-1``);
      equal ids give equal images whatever the batch.
    devices: devices to shard over (default all local devices).
    progress: ``(chunk, step, mean_objective) -> None`` for
      ``config.progress_every``.
    start: raw parameters to start from, with a leading item axis ``N``
      (``param.init``'s structure per item), instead of ``param.init``.
    check_finite: raise :class:`RenderError` naming any item whose objective
      or image is not finite (one host sync per call). False returns them;
      :func:`nonfinite_items` lists them.

  Returns:
    A :class:`RenderResult` of device arrays.
  """
  make, args = _family(make, args)
  # Keyed on structure: a notebook cell that rebuilds the same lambda reuses
  # the compiled program (see atlasjax.optvis.family).
  make = family_lib.keyed(make)
  pieces = custom_pieces(config)
  _checked(model, params, make, args, config, param, transforms, pieces)
  if args is None:
    make, args = _ignore_arg(make), np.zeros((1,), np.int32)
  if start is not None:
    make, args = _Started(make), (args, start)
  n = _num_items(args)
  key = jax.random.PRNGKey(0) if key is None else key
  renderer = build(model, make, config, param, transforms, optimizer,
                   tuple(devices) if devices is not None else None, pieces)
  renderer.progress = progress if progress is not None else _print_progress
  ids = np.arange(n) if item_ids is None else np.asarray(item_ids)
  if ids.shape != (n,):
    raise ValueError(f"item_ids must have shape ({n},), got {ids.shape}")
  chunk = _chunk_size(config, n, len(renderer.devices))
  num_chunks = math.ceil(n / chunk)
  total = num_chunks * chunk
  index = np.minimum(np.arange(total), n - 1)   # pad by repeating the last item
  ids = ids.astype(np.int32)[index]
  args = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[index], args)
  params = renderer.shard(params, replicate=True)
  outs = []
  for c in range(num_chunks):
    sl = slice(c * chunk, (c + 1) * chunk)
    chunk_args = renderer.shard(jax.tree_util.tree_map(lambda x: x[sl], args))
    outs.append(renderer.run_chunk(params, key, renderer.shard(ids[sl]),
                                   chunk_args, c))
  images, values, losses, attempt_values, alpha = (
      None if parts[0] is None else
      jnp.concatenate(parts)[:n] if num_chunks > 1 else parts[0][:n]
      for parts in zip(*outs))
  result = RenderResult(images, values, losses, attempt_values, alpha)
  if check_finite:
    _check_finite(result, np.asarray(item_ids if item_ids is not None
                                     else np.arange(n)).reshape(-1))
  return result


__all__ = ["RenderConfig", "RenderResult", "RenderError", "Renderer", "build",
           "render", "check_input_size", "redirected_relu", "DEFAULT_LR",
           "LUCID_REDIRECT_STEPS", "PRECISIONS", "best_finite_attempt",
           "nonfinite_items", "cast_params", "network_outputs", "cache_info",
           "cache_clear", "CacheInfo", "Compile", "custom_pieces", "check",
           "activation_shapes", "ObjectiveError"]
