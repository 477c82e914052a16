"""Objectives: pure, composable functions of a model's activations.

An :class:`Objective` wraps a function ``acts -> scalar`` plus the names of the
model layers it reads. ``acts`` is a mapping from layer name to the activations
of a *batch of images that are optimised together* — shape ``[B, H, W, C]`` for
spatial layers, ``[B, K]`` for ``logits``/``probs`` — plus the key
``"input"``: the parameterized images ``[B, H, W, 3]`` in [0, 1] *before* the
random transforms (Lucid's ``T("input")``). For an ordinary visualization
``B == 1``; batch-level terms (:func:`diversity`, :func:`channel_interpolate`,
:func:`alignment`) use ``B > 1``. Per-image objectives average over the batch
axis, so their value does not depend on ``B``; the image penalties
(:func:`l1`, :func:`l2`, :func:`total_variation`, :func:`blur_input_each_step`)
are sums over every pixel, as in Lucid.

The renderer *maximises* the objective. Objectives compose like numbers::

  obj = channel("mixed4a", 97) - 0.05 * l1() + 0.2 * deepdream("mixed4c")
  obj = sum_objectives([channel("mixed4a", c) for c in range(300)])

``sum_objectives`` (and Python's ``sum``, which uses ``__radd__``) builds one flat
sum: evaluation iterates over a list instead of recursing through nested
``__add__`` closures, so thousands of terms do not hit the recursion limit.

Everything that varies across a batch of renders — a channel index, a neuron
position, a direction vector, a class — is an ordinary (possibly traced) array
argument, so ``jax.vmap(lambda c: channel("mixed4a", c)(acts))`` works and the
renderer compiles one program for a whole family of objectives.

Static and traced arguments. Every *numeric* argument of the objectives here
may be an array that varies per item — indices, positions, ``cossim_pow``,
weights (``w * obj``), vectors, whitening matrices, ``decay_ratio``,
``constant``, image indices (:func:`on_image`), reference photos — and the
renderer batches it with ``vmap`` under one compile. What must be static is
what changes the *structure* of the computation: layer names, ``form``, the
choice between ``position=None`` (the centre) and an array, ``whitening=None``
versus a matrix, reference slot names. Closing over a different constant is
a different family and compiles again; passing it through ``args`` does not.

Reference photos (Lucid's ``T("input")`` trick for caricatures and style):
an objective may carry ``references``, images ``[H, W, 3]`` in [0, 1] under
a slot name. The renderer sends each through the *same* per-step transform
(same random key) as the item's image and through the network, and the
objective reads the photo's activations at ``acts[ref(layer, slot)]``. See
:func:`caricature`, :func:`style` and :func:`match`.

Checks. Objectives record the index ranges they need (:class:`Bound`), and
:func:`atlasjax.optvis.render.check` — run by every render before it
compiles — raises :class:`ObjectiveError`, one line, for an index out of
range, an undeclared layer read, a value that is not a scalar, or Python
control flow on a traced argument.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Activations = Mapping[str, jax.Array]
ObjectiveFn = Callable[[Activations], jax.Array]

INPUT = "input"

# Lucid's epsilon in ``_dot_cossim`` and in the atlas recipe's cosine term.
COSSIM_EPS = 1e-4
# Cosine similarities are floored at this value before the power, so that a
# direction pointing away from the target still gets a (small) positive weight.
COSSIM_FLOOR = 0.1
# Epsilon inside the square root of :func:`l2` (Lucid's default).
L2_EPS = 1e-6
# Epsilon of the Gram-matrix L2 normalisation in :func:`diversity`.
GRAM_NORM_EPS = 1e-10
# How many neighbours apart :func:`alignment` compares images (Lucid: 1..4).
ALIGNMENT_MAX_DISTANCE = 4
# Lucid's 3×3 blur: weight 1 at the centre, 0.5 on the border, normalised.
BLUR_KERNEL = np.array([[0.5, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 0.5]],
                       np.float32)


# Slot name of a reference photo when an objective does not name one.
REFERENCE = "reference"
# Axes a Bound can check: the channel (last) axis, or a spatial one.
BOUND_AXES = {"channel": -1, "row": 1, "col": 2}


class ObjectiveError(ValueError):
  """An objective that cannot run; one line naming the problem and the fix."""


class Bound(NamedTuple):
  """An index an objective takes into a layer, checked before compiling.

  ``value`` (int or array, any shape; each entry is checked) must lie in
  ``[0, n)`` where ``n`` is the size of ``layer``'s ``axis`` (a key of
  :data:`BOUND_AXES`) under the render's transforms. ``what`` names it in the
  error (``"channel"``, ``"position row"``, …).
  """
  layer: str
  axis: str
  value: Any
  what: str


def ref(layer: str, slot: str = REFERENCE) -> str:
  """The key of a reference photo's activations at ``layer`` in ``acts``."""
  return f"{slot}:{layer}"


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
  """A scalar function of activations, with the layers it reads.

  Attributes:
    fn: ``acts -> scalar`` (see the module docstring for ``acts``).
    layers: model layer names ``fn`` reads (``"input"`` excluded); the
      renderer asks the model for exactly these and stops the forward pass at
      the deepest of them. A single name may be given as a string.
    name: human-readable description.
    bounds: :class:`Bound` index checks (the built-ins fill them in).
    references: ``(slot, image)`` pairs: photos ``[H, W, 3]`` in [0, 1] that
      go through the render's transforms and network beside the image; ``fn``
      reads them at ``acts[ref(layer, slot)]``.
  """

  fn: ObjectiveFn
  layers: tuple[str, ...] = ()
  name: str = ""
  bounds: tuple[Bound, ...] = ()
  references: tuple[tuple[str, Any], ...] = ()

  def __post_init__(self):
    if isinstance(self.fn, Objective) or not callable(self.fn):
      raise ObjectiveError(
          f"Objective(fn=...) needs a function acts -> scalar, got "
          f"{type(self.fn).__name__}; e.g. Objective(lambda acts: "
          "acts['mixed4a'][..., 97].mean(), layers=('mixed4a',))")
    layers = (self.layers,) if isinstance(self.layers, str) else tuple(self.layers)
    if not all(isinstance(l, str) for l in layers):
      raise ObjectiveError(f"Objective {self.name!r}: layers must be layer names "
                           f"(strings), got {layers!r}")
    object.__setattr__(self, "layers", _layers(*layers))

  def __call__(self, acts: Activations) -> jax.Array:
    return self.fn(acts)

  def __add__(self, other):
    if _is_scalar(other):
      return _derived(lambda acts: self.fn(acts) + other, [self],
                      f"({self.name} + {_fmt(other)})")
    return sum_objectives([self, other])

  def __radd__(self, other):
    if _is_scalar(other) and not isinstance(other, jax.Array) and other == 0:
      return self  # sum() starts from 0.
    return self.__add__(other)

  def __neg__(self):
    return self * -1.0

  def __sub__(self, other):
    return self + (-other if isinstance(other, Objective) else -other)

  def __rsub__(self, other):
    return (-self) + other

  def __mul__(self, other):
    if _is_scalar(other):
      return _derived(lambda acts: other * self.fn(acts), [self],
                      f"{_fmt(other)}·{self.name}")
    if isinstance(other, Objective):
      return _derived(lambda acts: self.fn(acts) * other.fn(acts),
                      [self, other], f"{self.name}·{other.name}")
    return NotImplemented

  def __rmul__(self, other):
    return self.__mul__(other)

  def __truediv__(self, other):
    if not _is_scalar(other):
      return NotImplemented
    return self * (1.0 / other)

  def __repr__(self) -> str:
    return f"Objective({self.name})"


def _is_scalar(x: Any) -> bool:
  return isinstance(x, numbers.Number) or (
      isinstance(x, (jax.Array, np.ndarray)) and np.ndim(x) == 0)


def _fmt(x: Any) -> str:
  return f"{x:g}" if isinstance(x, numbers.Number) else "w"


def _merge_layers(objs: Iterable[Objective]) -> tuple[str, ...]:
  seen: dict[str, None] = {}
  for o in objs:
    for layer in o.layers:
      seen.setdefault(layer, None)
  return tuple(seen)


def _merge_references(objs: Iterable[Objective]) -> tuple[tuple[str, Any], ...]:
  """The terms' reference photos, one per slot (the same photo may repeat)."""
  slots: dict[str, Any] = {}
  for o in objs:
    for slot, image in o.references:
      if slot in slots and slots[slot] is not image:
        raise ObjectiveError(
            f"two different reference photos share the slot {slot!r}; give one "
            "of them another slot (e.g. caricature(..., slot='photo2'))")
      slots[slot] = image
  return tuple(slots.items())


def _derived(fn: ObjectiveFn, parts: Sequence[Objective], name: str) -> Objective:
  """An objective computed from ``parts``: their layers, bounds and photos."""
  return Objective(fn, _merge_layers(parts), name,
                   tuple(b for p in parts for b in p.bounds),
                   _merge_references(parts))


def _flatten_terms(objs: Sequence[Objective]) -> list[Objective]:
  """Expands nested flat sums so ``a + b + c`` is one list, not a chain."""
  terms: list[Objective] = []
  for o in objs:
    terms.extend(getattr(o, "_terms", None) or [o])
  return terms


class _Sum(Objective):
  """A flat sum of objectives, evaluated by iterating (no recursion)."""


def sum_objectives(objs: Iterable[Objective]) -> Objective:
  """The sum of ``objs`` as one flat objective (safe for thousands of terms)."""
  objs = list(objs)
  for o in objs:
    if not isinstance(o, Objective):
      raise ObjectiveError(f"sum_objectives: {o!r} is a {type(o).__name__}, not "
                           "an Objective; wrap a function as Objective(fn, layers=...)")
  terms = _flatten_terms(objs)
  if not terms:
    raise ValueError("sum_objectives needs at least one objective")

  def fn(acts):
    total = terms[0].fn(acts)
    for t in terms[1:]:
      total = total + t.fn(acts)
    return total

  name = " + ".join(t.name for t in terms[:4]) + (
      f" + … ({len(terms)} terms)" if len(terms) > 4 else "")
  out = _Sum(fn, _merge_layers(terms), name,
             tuple(b for t in terms for b in t.bounds), _merge_references(terms))
  object.__setattr__(out, "_terms", terms)
  return out


def _layers(*names: str) -> tuple[str, ...]:
  return tuple(n for n in dict.fromkeys(names) if n != INPUT)


def _centre(a: jax.Array, position) -> tuple[Any, Any]:
  """(row, col) of ``position``, or the centre (``H // 2, W // 2``, Lucid's)."""
  if position is None:
    return a.shape[1] // 2, a.shape[2] // 2
  position = jnp.asarray(position)
  return position[..., 0], position[..., 1]


def _index_bounds(layer: str, index, what: str = "channel") -> tuple[Bound, ...]:
  return (Bound(layer, "channel", index, what),)


def _position_bounds(layer: str, position) -> tuple[Bound, ...]:
  """Row and column checks of a ``(row, col)`` position (none for the centre)."""
  if position is None:
    return ()
  if isinstance(position, (tuple, list)) and len(position) == 2:
    row, col = position
  else:
    row, col = _Column(position, 0), _Column(position, 1)
  return (Bound(layer, "row", row, "position row"),
          Bound(layer, "col", col, "position column"))


class _Column:
  """Column ``i`` of a ``[..., 2]`` position array, read only when checked
  (a traced position has no values to check)."""

  def __init__(self, position, i: int):
    self.position, self.i = position, i

  def __array__(self, dtype=None, copy=None):
    del copy
    return np.asarray(self.position, dtype)[..., self.i]


# ----------------------------------------------------------------------------
# Neurons, channels, layers.

def neuron(layer: str, index, position=None) -> Objective:
  """Activation of one unit: channel ``index`` at spatial ``position``.

  Args:
    layer: layer name.
    index: channel (int or traced int array).
    position: ``(row, col)`` (array-like, may be traced) or None for the centre
      ``(H // 2, W // 2)``, the bottom-right of the central 2×2 for even sizes.
  """
  def fn(acts):
    a = acts[layer]
    r, c = _centre(a, position)
    return jnp.take(a[:, r, c, :], index, axis=-1).mean()
  return Objective(fn, _layers(layer), f"neuron:{layer}",
                   _index_bounds(layer, index) + _position_bounds(layer, position))


def channel(layer: str, index) -> Objective:
  """Mean activation of channel ``index`` over all positions (and images)."""
  def fn(acts):
    return jnp.take(acts[layer], index, axis=-1).mean()
  return Objective(fn, _layers(layer), f"channel:{layer}",
                   _index_bounds(layer, index))


def deepdream(layer: str) -> Objective:
  """Mean of squared activations of ``layer`` (Mordvintsev et al., 2015)."""
  return Objective(lambda acts: jnp.mean(acts[layer] ** 2), _layers(layer),
                   f"deepdream:{layer}")


# ----------------------------------------------------------------------------
# Directions.

def safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
  """``|x|`` over ``axis`` whose gradient is 0, not NaN, where ``x = 0``.

  ``sqrt``'s derivative is infinite at 0 and ``0 · inf`` is NaN, so a plain
  norm makes the gradient of a cosine NaN at an all-zero activation vector
  (a dead position, a blank start), which would poison the whole render.
  """
  sq = jnp.sum(x * x, axis=axis)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _dot_cossim(x: jax.Array, y: jax.Array, cossim_pow: float) -> jax.Array:
  """Lucid's ``_dot_cossim``: mean of ``x·y · max(0.1, cos(x, y)) ** p``.

  Dot products are over the last axis; the mean is over every other axis.
  With ``cossim_pow == 0`` it is the mean dot product.
  """
  dot = jnp.sum(x * y, axis=-1)
  # No ``if cossim_pow == 0`` shortcut: the power may be traced (per item).
  # The floored cosine is ≥ 0.1, so its 0th power is exactly 1.
  x_mag = safe_norm(x)
  y_mag = safe_norm(y)
  cossim = dot / (COSSIM_EPS + x_mag) / (COSSIM_EPS + y_mag)
  return jnp.mean(dot * jnp.maximum(COSSIM_FLOOR, cossim) ** cossim_pow)


def direction(layer: str, vec, cossim_pow: float = 0.0) -> Objective:
  """Activations along ``vec`` at every position, averaged (Lucid's form).

  ``cossim_pow == 0`` gives the mean dot product; ``> 0`` weights each
  position's dot product by its floored cosine similarity to the power.
  """
  def fn(acts):
    return _dot_cossim(acts[layer], jnp.asarray(vec), cossim_pow)
  return Objective(fn, _layers(layer), f"direction:{layer}")


def direction_cossim(layer: str, vec) -> Objective:
  """Mean over positions of the cosine similarity between activations and ``vec``."""
  def fn(acts):
    a, v = acts[layer], jnp.asarray(vec)
    dot = jnp.sum(a * v, axis=-1)
    mags = safe_norm(a) * safe_norm(v)
    return jnp.mean(dot / (COSSIM_EPS + mags))
  return Objective(fn, _layers(layer), f"direction_cossim:{layer}")


def direction_neuron(layer: str, vec, position=None,
                     cossim_pow: float = 0.0) -> Objective:
  """:func:`direction` at one spatial position (default the centre)."""
  def fn(acts):
    a = acts[layer]
    r, c = _centre(a, position)
    return _dot_cossim(a[:, r, c, :], jnp.asarray(vec), cossim_pow)
  return Objective(fn, _layers(layer), f"direction_neuron:{layer}",
                   _position_bounds(layer, position))


# Names of the forms of :func:`direction_neuron_cossim`.
COSSIM_FORMS = ("cosine", "lucid", "lucid_notebook")
# Former name of "lucid_notebook", still accepted.
_FORM_ALIASES = {"atlas": "lucid_notebook"}
# Below this norm a (whitened) direction counts as zero when normalised.
DIRECTION_NORM_TINY = 1e-12


def direction_neuron_cossim(layer: str, vec, position=None,
                            cossim_pow: float = 1.0, whitening=None,
                            form: str | None = None) -> Objective:
  """The activation-atlas objective: a direction at the centre neuron,
  weighted by cosine similarity. Three forms:

  Length: half of it is the explanation of the objective's form below; the
  body is ~25 lines.

  * ``form="cosine"`` (default when ``whitening`` is given; the atlas
    objective): with ``w = v @ S`` and ``ŵ = w / |w|``,
    ``(a·ŵ) · max(0.1, cos(a, w)) ** p`` where ``cos = a·ŵ / (ε + |a|)`` is a
    true cosine in [-1, 1]. Its value is the activation's length along the
    direction times the floored cosine to the power, so it does not change
    when ``v`` or ``S`` is scaled, nor with the channel count, and the 0.1
    floor and the power ``p`` mean the same on every layer and model.
  * ``form="lucid"`` (default when ``whitening`` is None): Lucid's
    ``_dot_cossim``, ``mean(v·a · max(0.1, cos(a, v)) ** p)`` with
    ``cos = v·a / (ε + |a|) / (ε + |v|)``, ε = 1e-4.
  * ``form="lucid_notebook"`` (formerly ``"atlas"``): the activation atlas
    notebook's ``direction_neuron_cossim_S`` as published, for reproductions:
    ``w = v @ S``, ``d = mean_c(a_c · w_c)`` (a *mean* over channels),
    ``"cos" = d / (ε + |a|)`` — no division by ``|w|`` — and the value
    ``d · max(0.1, "cos") ** p``. Its "cosine" is ``cos · |w| / C``, so the
    floor and the power act differently with every layer width, whitening
    and ridge.

  ``S`` is a whitening matrix ``[C, C]`` (e.g. the inverse activation
  covariance); ``None`` means the identity.

  Args:
    layer: layer name.
    vec: direction ``[C]`` (may be traced; the renderer vmaps over it).
    position: ``(row, col)`` or None for the centre.
    cossim_pow: the power ``p``.
    whitening: optional ``[C, C]`` matrix, closed over (same for every item).
    form: one of :data:`COSSIM_FORMS`; see above.
  """
  if form is not None and not isinstance(form, str):
    raise ObjectiveError(f"direction_neuron_cossim: form is static (it picks the "
                         f"formula); pass one of {', '.join(COSSIM_FORMS)}, not "
                         f"a {type(form).__name__}")
  form = form or ("lucid" if whitening is None else "cosine")
  form = _FORM_ALIASES.get(form, form)
  if form not in COSSIM_FORMS:
    raise ObjectiveError(f"form must be one of {', '.join(COSSIM_FORMS)}; got {form!r}")
  if form == "lucid" and whitening is not None:
    raise ObjectiveError("whitening is not part of Lucid's _dot_cossim; use "
                     "form='cosine' (or 'lucid_notebook') with a whitening matrix")

  def fn(acts):
    a = acts[layer]
    r, c = _centre(a, position)
    a = a[:, r, c, :]
    v = jnp.asarray(vec)
    if form == "lucid":
      return _dot_cossim(a, v, cossim_pow)
    w = v if whitening is None else v @ jnp.asarray(whitening)
    mag = safe_norm(a)
    if form == "lucid_notebook":
      dot = jnp.mean(a * w, axis=-1)
      cossim = jnp.maximum(COSSIM_FLOOR, dot / (COSSIM_EPS + mag))
      return jnp.mean(dot * cossim ** cossim_pow)
    unit = w / jnp.maximum(safe_norm(w), DIRECTION_NORM_TINY)
    along = jnp.sum(a * unit, axis=-1)
    cossim = jnp.maximum(COSSIM_FLOOR, along / (COSSIM_EPS + mag))
    return jnp.mean(along * cossim ** cossim_pow)
  return Objective(fn, _layers(layer), f"direction_neuron_cossim[{form}]:{layer}",
                   _position_bounds(layer, position))


# ----------------------------------------------------------------------------
# Classes.

def class_logit(label, layer: str = "logits") -> Objective:
  """The logit of class ``label`` (int or traced int), averaged over images."""
  def fn(acts):
    return jnp.take(acts[layer], label, axis=-1).mean()
  return Objective(fn, _layers(layer), f"logit:{layer}",
                   _index_bounds(layer, label, "class"))


def class_probability(label, layer: str = "logits") -> Objective:
  """Softmax probability of class ``label`` computed from ``layer`` (logits)."""
  def fn(acts):
    probs = jax.nn.softmax(acts[layer], axis=-1)
    return jnp.take(probs, label, axis=-1).mean()
  return Objective(fn, _layers(layer), f"probability:{layer}",
                   _index_bounds(layer, label, "class"))


# ----------------------------------------------------------------------------
# Image penalties (use with a negative weight).

def l1(layer: str = INPUT, constant=0.0) -> Objective:
  """``sum |x - constant|`` over ``layer`` (default the input image)."""
  return Objective(lambda acts: jnp.sum(jnp.abs(acts[layer] - constant)),
                   _layers(layer), f"l1:{layer}")


def l2(layer: str = INPUT, constant=0.0, epsilon: float = L2_EPS) -> Objective:
  """``sqrt(ε + sum (x - constant)²)`` over ``layer``."""
  return Objective(
      lambda acts: jnp.sqrt(epsilon + jnp.sum((acts[layer] - constant) ** 2)),
      _layers(layer), f"l2:{layer}")


def total_variation(layer: str = INPUT) -> Objective:
  """Anisotropic total variation: sum of absolute neighbour differences
  (``tf.image.total_variation``), summed over the batch."""
  def fn(acts):
    x = acts[layer]
    return (jnp.sum(jnp.abs(x[:, 1:] - x[:, :-1]))
            + jnp.sum(jnp.abs(x[:, :, 1:] - x[:, :, :-1])))
  return Objective(fn, _layers(layer), f"tv:{layer}")


def blur(x: jax.Array) -> jax.Array:
  """Lucid's normalised 3×3 per-channel blur of ``[B, H, W, C]`` (SAME padding)."""
  c = x.shape[-1]
  k = jnp.tile(jnp.asarray(BLUR_KERNEL)[:, :, None, None], (1, 1, 1, c))
  conv = lambda t: jax.lax.conv_general_dilated(
      t, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=c)
  return conv(x) / conv(jnp.ones_like(x))


def blur_input_each_step() -> Objective:
  """``0.5 · sum (x - stop_gradient(blur(x)))²`` on the input.

  Maximising ``-k · blur_input_each_step()`` with plain gradient steps is the
  update ``x ← (1 - k) x + k blur(x)`` of early feature-visualization work
  (Nguyen et al., 2015).
  """
  def fn(acts):
    x = acts[INPUT]
    return 0.5 * jnp.sum((x - jax.lax.stop_gradient(blur(x))) ** 2)
  return Objective(fn, (), "blur_input_each_step")


# ----------------------------------------------------------------------------
# Batch-level terms: these relate the B images optimised together.

def channel_interpolate(layer1: str, index1, layer2: str, index2) -> Objective:
  """Image ``n`` of ``B`` maximises ``(1 - n/(B-1))·ch1 + n/(B-1)·ch2``.

  Summed over the batch, as in Lucid; use with a "shared + separate"
  parameterization (:func:`atlasjax.optvis.param.shared_separate`).
  """
  def fn(acts):
    a1 = jnp.take(acts[layer1], index1, axis=-1)
    a2 = jnp.take(acts[layer2], index2, axis=-1)
    b = a1.shape[0]
    w = jnp.linspace(0.0, 1.0, b) if b > 1 else jnp.zeros((1,))
    m1 = a1.reshape(b, -1).mean(axis=1)
    m2 = a2.reshape(b, -1).mean(axis=1)
    return jnp.sum((1.0 - w) * m1 + w * m2)
  return Objective(fn, _layers(layer1, layer2), f"interpolate:{layer1}:{layer2}",
                   _index_bounds(layer1, index1) + _index_bounds(layer2, index2))


def alignment(layer: str, decay_ratio: float = 2.0) -> Objective:
  """Negative mean squared difference between nearby images in the batch.

  Pairs ``d = 1 … 4`` apart are weighted by ``decay_ratio ** -d``. The value is
  ≤ 0, so *adding* it (with a positive weight) encourages neighbours to agree.
  """
  def fn(acts):
    a = acts[layer]
    b = a.shape[0]
    total = 0.0
    for d in range(1, ALIGNMENT_MAX_DISTANCE + 1):
      if d < b:
        total = total + jnp.sum(
            jnp.mean((a[:-d] - a[d:]) ** 2, axis=tuple(range(1, a.ndim)))
        ) / decay_ratio ** d
    return -total
  return Objective(fn, _layers(layer), f"alignment:{layer}")


def diversity(layer: str) -> Objective:
  """Negative mean pairwise cosine similarity of Gram matrices across the batch.

  ``G_i = A_iᵀ A_i`` for each image's ``[HW, C]`` activations, L2-normalised;
  the value is ``-(1/B) Σ_{i≠j} <G_i, G_j>``. It is the *negative* of Lucid's
  ``diversity``: add it with a positive weight (Lucid's ``- 1e2 * diversity``
  is ``+ 1e2 * diversity`` here) to push the images apart in "style".
  """
  def fn(acts):
    a = acts[layer]
    b, c = a.shape[0], a.shape[-1]
    flat = a.reshape(b, -1, c)
    grams = jnp.einsum("bnc,bnd->bcd", flat, flat)
    norms = jnp.sqrt(jnp.maximum(
        jnp.sum(grams ** 2, axis=(1, 2), keepdims=True), GRAM_NORM_EPS))
    g = (grams / norms).reshape(b, -1)
    sims = g @ g.T
    return -(jnp.sum(sims) - jnp.trace(sims)) / b
  return Objective(fn, _layers(layer), f"diversity:{layer}")


# ----------------------------------------------------------------------------
# One image of the batch.

def on_image(obj: Objective, index) -> Objective:
  """``obj`` evaluated on image ``index`` of the ``B`` images optimised
  together (Lucid's ``batch=``); ``index`` may be traced (per item).

  Every activation (and the input) is cut to that image, keeping a batch axis
  of 1, so ``obj`` sees ``[1, …]`` arrays.
  """
  def fn(acts):
    one = {k: jax.lax.dynamic_slice_in_dim(v, jnp.asarray(index, jnp.int32), 1)
           for k, v in acts.items()}
    return obj.fn(one)
  return Objective(fn, obj.layers, f"{obj.name}[image]", obj.bounds,
                   obj.references)


# ----------------------------------------------------------------------------
# Reference photos (they pass through the render's per-step transform).

def _photo(photo) -> Any:
  """A reference photo as given: ``[H, W, 3]`` (checked by the renderer)."""
  if isinstance(photo, (np.ndarray, list, tuple)):
    photo = np.asarray(photo, np.float32)
  if np.ndim(photo) != 3 or np.shape(photo)[-1] != 3:
    raise ObjectiveError(f"a reference photo must be [H, W, 3] RGB in [0, 1]; "
                         f"got shape {tuple(np.shape(photo))}")
  return photo


def caricature(layer: str, photo, cossim_pow: float = 1.0,
               slot: str = REFERENCE) -> Objective:
  """Lucid's caricature: ``photo``'s activations at ``layer``, exaggerated.

  The value is Lucid's ``dot_compare``: at every position, the dot product of
  the image's activations with the photo's (fixed: no gradient flows into the
  photo), weighted by their floored cosine similarity to ``cossim_pow``,
  averaged. The photo goes through the same per-step transform as the image.
  """
  photo = _photo(photo)

  def fn(acts):
    target = jax.lax.stop_gradient(acts[ref(layer, slot)])
    return _dot_cossim(acts[layer], target, cossim_pow)
  return Objective(fn, _layers(layer), f"caricature:{layer}",
                   references=((slot, photo),))


def gram(a: jax.Array) -> jax.Array:
  """Per-image Gram matrices ``AᵀA / (H·W)`` of ``[B, H, W, C]`` activations."""
  b, c = a.shape[0], a.shape[-1]
  flat = a.reshape(b, -1, c)
  return jnp.einsum("bnc,bnd->bcd", flat, flat) / flat.shape[1]


def style(layer: str, photo, slot: str = REFERENCE) -> Objective:
  """Gatys et al.'s style match: ``-mean((G(image) - G(photo))²)`` with the
  Gram matrices of :func:`gram`. Maximising it makes the image's texture
  statistics at ``layer`` those of the photo (seen through the transform)."""
  photo = _photo(photo)

  def fn(acts):
    target = jax.lax.stop_gradient(gram(acts[ref(layer, slot)]))
    return -jnp.mean((gram(acts[layer]) - target) ** 2)
  return Objective(fn, _layers(layer), f"style:{layer}",
                   references=((slot, photo),))


def match(layer: str, photo, slot: str = REFERENCE) -> Objective:
  """Alignment to a photo (feature inversion): ``-mean((a - a_photo)²)`` of
  the activations at ``layer``, position by position."""
  photo = _photo(photo)

  def fn(acts):
    target = jax.lax.stop_gradient(acts[ref(layer, slot)])
    return -jnp.mean((acts[layer] - target) ** 2)
  return Objective(fn, _layers(layer), f"match:{layer}",
                   references=((slot, photo),))


__all__ = [
    "Objective", "sum_objectives", "neuron", "channel", "deepdream",
    "direction", "direction_cossim", "direction_neuron",
    "direction_neuron_cossim", "class_logit", "class_probability", "l1", "l2",
    "total_variation", "blur", "blur_input_each_step", "channel_interpolate",
    "alignment", "diversity", "INPUT", "ObjectiveError", "Bound", "BOUND_AXES",
    "REFERENCE", "ref", "on_image", "caricature", "style", "match", "gram",
]
