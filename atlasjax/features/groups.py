"""Neuron groups: a photo's activations split into a few directions.

The "Building Blocks" article (Olah et al. 2018) factorizes one photo's
activations at a layer, ``[H·W, C]``, into ``n`` non-negative factors
(Lucid's ``ChannelReducer(n, "NMF")``): each *neuron group* has a spatial map
(where in the photo it is active) and a channel vector (which neurons it
combines), and the group's feature visualization renders that channel vector
as a direction. This module does the same for any atlasjax model:

* :func:`neuron_groups` runs the model on the photo and factorizes with
  :func:`atlasjax.features.nmf.nmf`, optionally weighting channels by their
  attribution to a class first (see :func:`attribution_weights`);
* :func:`from_dictionary` uses a trained sparse dictionary instead: the groups
  are the dictionary features most active on the photo, their spatial maps the
  codes, their channel vectors the decoder rows;
* :func:`render_groups` renders every group's direction in ONE batched
  program; :func:`figure` lays out the photo, each group's map in its own
  colour and each render; :func:`save` writes ``groups.npz`` and the PNG.
"""

from __future__ import annotations

import colorsys
import dataclasses
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from atlasjax import images as images_lib
from atlasjax import readers
from atlasjax.features import nmf as nmf_lib
from atlasjax.features import objectives as feature_objectives
from atlasjax.features import sae as sae_lib
from atlasjax.features import store
from atlasjax.models import base
from atlasjax.optvis import render as render_lib

# Group colours: evenly spaced hues at this lightness and saturation.
GROUP_LIGHTNESS = 0.5
GROUP_SATURATION = 0.85
# Figure geometry, in pixels.
FIGURE_GAP = 6
# Render settings for group icons (Building Blocks used 80 px icons).
DEFAULT_RENDER = render_lib.RenderConfig(size=96, steps=256)
# Attribution weights are divided by their mean so the factorized data keeps
# the activations' scale; channels never attributed keep this small weight
# instead of zero (a zero column would make the un-weighting divide by zero).
MIN_ATTRIBUTION_WEIGHT = 1e-3
METHODS = ("nmf", "nmf+attribution", "dictionary")
GROUPS_FILE = "groups.npz"
# What groups.npz must hold (see :func:`save`); named sizes agree across arrays.
FILE_SPEC = {
    "image": readers.Array(("S", "S", 3)),
    "activations": readers.Array(("H", "W", "C")),
    "spatial": readers.Array(("H", "W", "N")),
    "channels": readers.Array(("N", "C")),
    "layer": readers.Array((), kinds=readers.STRING, finite=False),
    "method": readers.Array((), kinds=readers.STRING, finite=False),
}
FIX = "write it again with experiments/neuron_groups.py"


@dataclasses.dataclass(frozen=True)
class NeuronGroups:
  """One photo's neuron groups at one layer.

  Attributes:
    layer: the layer factorized.
    image: ``[S, S, 3]`` in [0, 1], exactly what the network saw.
    activations: ``[H, W, C]`` at ``layer``.
    spatial: ``[H, W, n]`` each group's spatial map.
    channels: ``[n, C]`` each group's channel vector
      (``activations ≈ spatial @ channels``).
    method: ``"nmf"``, ``"nmf+attribution"`` or ``"dictionary"``.
  """
  layer: str
  image: np.ndarray
  activations: np.ndarray
  spatial: np.ndarray
  channels: np.ndarray
  method: str = "nmf"

  @property
  def n(self) -> int:
    """Number of groups."""
    return self.channels.shape[0]


def load_photo(path: os.PathLike | str, model: base.Model) -> np.ndarray:
  """The model's evaluation crop of ``path``, ``[S, S, 3]`` in [0, 1]."""
  return images_lib.load_for_model(path, model.input_size)


def layer_activations(model: base.Model, params, image: np.ndarray,
                      layer: str) -> np.ndarray:
  """``[H, W, C]`` activations of one image at a spatial layer."""
  if not model.layer(layer).spatial:
    raise ValueError(f"Layer {layer!r} of {model.name} has no spatial extent; "
                     "neuron groups need a convolutional layer.")
  acts = model.apply(params, jnp.asarray(image)[None], layers=(layer,))[layer]
  return np.asarray(acts[0], np.float32)


def attribution_weights(model: base.Model, params, image: np.ndarray,
                        layer: str, label: int) -> np.ndarray:
  """Per-channel weights ``[C]``: how much each channel drives ``label``.

  The attribution of a position and channel is activation × gradient of the
  class logit (Building Blocks' linear attribution); a channel's weight is the
  root mean square of its attributions over positions, divided by the mean
  weight. Factorizing ``activations · w`` makes NMF spend its rank on what
  matters for the class rather than on what is merely large.
  """
  model.check_perturbable((layer,))
  images = jnp.asarray(image)[None]
  acts = model.apply(params, images, layers=(layer,))[layer]

  def logit(offset):
    out = model.apply(params, images, layers=(layer, "logits"),
                      perturb={layer: offset})
    return out["logits"][0, label]

  grad = jax.grad(logit)(jnp.zeros_like(acts))
  attr = np.asarray((acts * grad)[0], np.float64)
  rms = np.sqrt((attr ** 2).reshape(-1, attr.shape[-1]).mean(0))
  weights = rms / max(rms.mean(), np.finfo(np.float64).tiny)
  return np.maximum(weights, MIN_ATTRIBUTION_WEIGHT).astype(np.float32)


def _left_to_right(spatial: np.ndarray, channels: np.ndarray):
  """Groups ordered by the column of their peak (Lucid's ordering)."""
  order = np.argsort(spatial.max(axis=0).argmax(axis=0), kind="stable")
  return spatial[..., order], channels[order]


def neuron_groups(model: base.Model, params, image: np.ndarray, layer: str,
                  groups: int, *, label: int | None = None,
                  iterations: int = nmf_lib.DEFAULT_ITERATIONS) -> NeuronGroups:
  """NMF neuron groups of one photo (see the module docstring).

  Args:
    model, params: the network.
    image: ``[S, S, 3]`` in [0, 1] (e.g. from :func:`load_photo`).
    layer: a spatial layer with non-negative activations (after a ReLU).
    groups: number of groups ``n``.
    label: if given, weight channels by :func:`attribution_weights` to this
      class index before factorizing (the channel vectors are un-weighted
      afterwards, so ``activations ≈ spatial @ channels`` still holds).
    iterations: HALS sweeps.
  """
  acts = layer_activations(model, params, image, layer)
  if acts.min() < 0:
    raise ValueError(f"Layer {layer!r} has negative activations "
                     f"(min {acts.min():.3g}); NMF needs a layer after a ReLU.")
  if not 1 <= groups <= min(acts.shape[0] * acts.shape[1], acts.shape[2]):
    raise ValueError(f"groups={groups} must be between 1 and "
                     f"{min(acts.shape[0] * acts.shape[1], acts.shape[2])} for "
                     f"{layer} ({acts.shape[0]}×{acts.shape[1]}×{acts.shape[2]}).")
  flat = acts.reshape(-1, acts.shape[-1])
  weights = (np.ones(flat.shape[1], np.float32) if label is None else
             attribution_weights(model, params, image, layer, label))
  f = nmf_lib.nmf(flat * weights, groups, iterations)
  spatial = np.asarray(f.spatial).reshape(*acts.shape[:2], groups)
  channels = np.asarray(f.channels) / weights
  spatial, channels = _left_to_right(spatial, channels)
  return NeuronGroups(layer, np.asarray(image, np.float32), acts, spatial,
                      channels, "nmf" if label is None else "nmf+attribution")


def from_dictionary(dictionary: sae_lib.Dictionary, model: base.Model, params,
                    image: np.ndarray, layer: str, groups: int) -> NeuronGroups:
  """Neuron groups from a trained dictionary instead of NMF.

  The groups are the ``groups`` features with the largest summed code over
  the photo; ``spatial`` holds their codes and ``channels`` their decoder rows
  in activation units (times ``input_scale``), so ``spatial @ channels`` is
  those features' part of the reconstruction (the decoder bias and the other
  features are left out). Decoder rows may be negative.
  """
  sae_lib.check_fits(dictionary, model, layer)
  acts = layer_activations(model, params, image, layer)
  codes = np.asarray(sae_lib.encode(dictionary, acts.reshape(-1, acts.shape[-1])))
  top = np.argsort(-codes.sum(0), kind="stable")[:groups]
  spatial = codes[:, top].reshape(*acts.shape[:2], len(top))
  channels = np.asarray(dictionary.decoder)[top] * float(dictionary.input_scale)
  spatial, channels = _left_to_right(spatial, channels)
  return NeuronGroups(layer, np.asarray(image, np.float32), acts, spatial,
                      channels, "dictionary")


def render_groups(model: base.Model, params, groups: NeuronGroups,
                  config: render_lib.RenderConfig = DEFAULT_RENDER,
                  key: jax.Array | None = None) -> np.ndarray:
  """Every group's channel vector rendered as a direction, in one batch.

  Returns ``[n, size, size, 3]`` in [0, 1].
  """
  result = render_lib.render(model, params,
                             feature_objectives.Direction(groups.layer),
                             args=jnp.asarray(groups.channels), config=config,
                             key=key)
  return np.asarray(result.images)[..., :3]


def colours(n: int) -> np.ndarray:
  """``[n, 3]`` distinct colours in [0, 1] (evenly spaced hues)."""
  return np.array([colorsys.hls_to_rgb(i / max(n, 1), GROUP_LIGHTNESS,
                                       GROUP_SATURATION) for i in range(n)],
                  np.float32)


def _resize(array: np.ndarray, side: int) -> np.ndarray:
  """``[h, w]`` or ``[h, w, 3]`` in [0, 1] resized (bilinear) to ``side``."""
  image = Image.fromarray(np.uint8(np.clip(array, 0, 1) * 255 + 0.5))
  return np.asarray(image.resize((side, side), Image.BILINEAR), np.float32) / 255


def group_maps(groups: NeuronGroups, side: int) -> np.ndarray:
  """``[n, side, side, 3]``: each group's map (scaled to its maximum) tinted
  in its colour over black."""
  peak = np.maximum(groups.spatial.max(axis=(0, 1)), np.finfo(np.float32).tiny)
  tint = colours(groups.n)
  return np.stack([_resize(groups.spatial[..., i] / peak[i], side)[..., None]
                   * tint[i] for i in range(groups.n)])


def figure(groups: NeuronGroups, renders: np.ndarray) -> np.ndarray:
  """Building Blocks' figure: the photo and all groups' maps blended in their
  colours (top row), then each group's map above its render, framed in its
  colour. ``[height, width, 3]`` in [0, 1] on white."""
  n, side = groups.n, renders.shape[1]
  gap = FIGURE_GAP
  maps = group_maps(groups, side)
  share = groups.spatial / np.maximum(groups.spatial.sum(-1, keepdims=True),
                                      np.finfo(np.float32).tiny)
  blend = _resize(share @ colours(n), side)
  photo = _resize(groups.image, side)
  width = max(n, 2) * (side + gap) + gap
  sheet = np.ones((3 * (side + gap) + gap, width, 3), np.float32)

  def put(tile, row, col):
    y, x = gap + row * (side + gap), gap + col * (side + gap)
    sheet[y:y + side, x:x + side] = tile

  put(photo, 0, 0)
  put(0.5 * photo + 0.5 * blend, 0, 1)
  for i in range(n):
    put(maps[i], 1, i)
    framed = renders[i].copy()
    framed[:3], framed[-3:], framed[:, :3], framed[:, -3:] = (colours(n)[i],) * 4
    put(framed, 2, i)
  return sheet


def save(groups: NeuronGroups, out: os.PathLike | str,
         picture: np.ndarray | None = None) -> pathlib.Path:
  """Writes ``out/groups.npz`` (and ``out/groups.png``) atomically.

  ``groups.npz`` holds ``image`` ``[S, S, 3]``, ``activations`` ``[H, W, C]``,
  ``spatial`` ``[H, W, n]``, ``channels`` ``[n, C]``, ``layer`` and
  ``method``.
  """
  out = pathlib.Path(out)
  store.save_npz(out / GROUPS_FILE, {
      "image": groups.image, "activations": groups.activations,
      "spatial": groups.spatial, "channels": groups.channels,
      "layer": np.array(groups.layer), "method": np.array(groups.method)})
  if picture is not None:
    store.save_png(out / "groups.png", picture)
  return out / GROUPS_FILE


def load(path: os.PathLike | str) -> NeuronGroups:
  """Reads a ``groups.npz`` written by :func:`save`, validated before use:
  shapes agree (``[S, S, 3]``, ``[H, W, C]``, ``[H, W, n]``, ``[n, C]``),
  values are finite, the photo lies in [0, 1] and ``method`` is known.

  Raises:
    atlasjax.readers.FileFormatError: anything amiss, on one line.
  """
  f, _ = readers.read_npz(path, FILE_SPEC, default=None, fix=FIX)
  layer, method = str(f["layer"]), str(f["method"])
  if not layer:
    raise readers.refuse(path, "'layer' is empty", FIX)
  if method not in METHODS:
    raise readers.refuse(path, f"unknown method {method[:40]!r} (one of "
                         f"{', '.join(METHODS)})", FIX)
  if f["image"].size and not 0 <= f["image"].min() <= f["image"].max() <= 1:
    raise readers.refuse(path, "'image' has values outside [0, 1]", FIX)
  return NeuronGroups(layer, f["image"].astype(np.float32),
                      f["activations"].astype(np.float32),
                      f["spatial"].astype(np.float32),
                      f["channels"].astype(np.float32), method)
