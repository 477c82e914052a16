"""Dataset examples and activation spectra for channels or directions.

For each direction ``v`` (a channel is a one-hot direction) at a spatial layer,
an image's score is ``max over positions of acts[y, x] · v``; the position of
the max locates the receptive-field-sized crop that excites it most.

:func:`collect` streams an image set in batches (bounded memory: one batch of
activations at a time, a running top-k per direction, plus one score and one
position per image and direction for the spectrum)::

  config = examples.ExamplesConfig(layer="mixed4c", k=9)
  found = examples.collect(model, params, paths, config,
                           examples.channel_directions([97, 200], depth=512))
  top = examples.example_tiles(found, 0, found.top.images[0])   # crops
  spectrum = examples.spectrum_indices(found.scores[:, 0], (0.0, 0.5, 0.99, 1.0))
  examples.save_examples_sheet(top, "ex.png", beside=optimized_image)

``beside`` takes an optional image (e.g. the feature visualization of the same
direction) drawn first, labelled "optimized".
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax import images as images_lib
from atlasjax import plotting
from atlasjax.models import base

DEFAULT_K = 9
DEFAULT_BATCH_SIZE = 16
DEFAULT_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
DEFAULT_RF_MASS = 0.9     # effective receptive field: box holding 90 % of |grad|
TILE_SIZE = 112           # display side of each example crop
_EMPTY = -1


@dataclasses.dataclass(frozen=True)
class ExamplesConfig:
  """What to collect.

  Attributes:
    layer: a spatial layer name.
    k: examples kept per direction.
    batch_size: images per forward pass.
  """
  layer: str
  k: int = DEFAULT_K
  batch_size: int = DEFAULT_BATCH_SIZE


@dataclasses.dataclass(frozen=True)
class TopK:
  """Running top-k per direction, best first; empty slots have image -1.

  Attributes:
    scores: ``[D, k]`` float32, descending (ties: lower image index first).
    images: ``[D, k]`` int image indices.
    positions: ``[D, k, 2]`` (row, col) of the max in the layer's grid.
  """
  scores: np.ndarray
  images: np.ndarray
  positions: np.ndarray


@dataclasses.dataclass(frozen=True)
class ExampleSet:
  """Result of :func:`collect`.

  Attributes:
    top: the top-k per direction.
    scores: ``[N, D]`` score of every path (NaN where unreadable).
    positions: ``[N, D, 2]`` argmax position per path and direction.
    paths: the input paths (indices refer to these).
    layer: the layer name; stride: its stride in input pixels.
    grid: ``(h, w)`` of the layer's activations; image_size: ``(H, W)`` input.
    report: unreadable files that were skipped.
  """
  top: TopK
  scores: np.ndarray
  positions: np.ndarray
  paths: tuple[str, ...]
  layer: str
  stride: float
  grid: tuple[int, int]
  image_size: tuple[int, int]
  report: images_lib.ReadReport


def channel_directions(channels: Sequence[int], depth: int) -> np.ndarray:
  """One-hot ``[D, depth]`` directions selecting ``channels``."""
  channels = np.asarray(channels)
  if channels.size and (channels.min() < 0 or channels.max() >= depth):
    raise ValueError(f"channels must lie in 0..{depth - 1}, got {channels}")
  return np.eye(depth, dtype=np.float32)[channels]


def direction_scores(acts, directions):
  """Max over positions of ``acts · v`` and where it is.

  Args:
    acts: ``[B, h, w, C]``; directions: ``[D, C]``.

  Returns:
    ``(scores [B, D], positions [B, D, 2])``; positions are (row, col),
    the first maximum in row-major order.
  """
  b, h, w, _ = acts.shape
  proj = jnp.einsum("bhwc,dc->bdhw", acts, directions).reshape(b, -1, h * w)
  flat = jnp.argmax(proj, axis=-1)
  return proj.max(axis=-1), jnp.stack([flat // w, flat % w], axis=-1)


@functools.partial(jax.jit, static_argnames=("model", "layer"))
def _batch_scores(model, params, images, directions, layer):
  acts = model.apply(params, images, layers=(layer,))[layer]
  scores, positions = direction_scores(acts, directions)
  return scores, positions, jnp.array(acts.shape[1:3])


def empty_topk(num_directions: int, k: int) -> TopK:
  """A :class:`TopK` with every slot empty (score -inf, image -1)."""
  return TopK(np.full((num_directions, k), -np.inf, np.float32),
              np.full((num_directions, k), _EMPTY, np.int64),
              np.zeros((num_directions, k, 2), np.int64))


def merge_topk(state: TopK, scores, image_ids, positions) -> TopK:
  """``state`` updated with a batch; pure (returns a new TopK).

  Args:
    scores: ``[B, D]``; image_ids: ``[B]``; positions: ``[B, D, 2]``.
  """
  scores = np.asarray(scores, np.float32).T                        # [D, B]
  d, k = state.scores.shape
  all_scores = np.concatenate([state.scores, scores], axis=1)
  all_images = np.concatenate(
      [state.images, np.broadcast_to(np.asarray(image_ids), scores.shape)], axis=1)
  all_pos = np.concatenate(
      [state.positions, np.swapaxes(np.asarray(positions), 0, 1)], axis=1)
  # Empty slots sort last (their index is pushed to the end for ties).
  tie_key = np.where(all_images == _EMPTY, np.iinfo(np.int64).max, all_images)
  order = np.stack([np.lexsort((tie_key[i], -all_scores[i]))[:k]
                    for i in range(d)])
  take = lambda a: np.take_along_axis(a, order, axis=1)
  return TopK(take(all_scores), take(all_images),
              np.take_along_axis(all_pos, order[..., None], axis=1))


def collect(model: base.Model, params, paths: Sequence[str],
            config: ExamplesConfig, directions,
            load: Callable[[str], np.ndarray] = images_lib.load_eval,
            warn: bool = True) -> ExampleSet:
  """Streams ``paths`` and gathers top-k examples and all scores per direction.

  ``directions`` is ``[D, C]`` (use :func:`channel_directions` for channels).
  """
  layer = model.layer(config.layer)
  if not layer.spatial:
    raise ValueError(f"Layer {config.layer!r} has no spatial extent.")
  directions = jnp.asarray(directions, jnp.float32)
  if directions.ndim != 2 or directions.shape[1] != layer.depth:
    raise ValueError(f"directions must be [D, {layer.depth}] for {layer.name}, "
                     f"got {directions.shape}")
  n, d = len(paths), directions.shape[0]
  scores = np.full((n, d), np.nan, np.float32)
  positions = np.zeros((n, d, 2), np.int64)
  top = empty_topk(d, config.k)
  report = images_lib.ReadReport()
  grid = image_size = None
  for batch in images_lib.iter_batches(list(paths), config.batch_size, load=load,
                                       report=report, warn=warn):
    n_batch = len(batch.indices)
    padded = np.zeros((config.batch_size,) + batch.images.shape[1:], np.float32)
    padded[:n_batch] = batch.images      # one compilation for every batch
    s, p, g = jax.device_get(_batch_scores(
        model, params, jnp.asarray(padded), directions, config.layer))
    s, p = s[:n_batch], p[:n_batch]
    grid, image_size = tuple(int(x) for x in g), batch.images.shape[1:3]
    scores[batch.indices], positions[batch.indices] = s, p
    top = merge_topk(top, s, batch.indices, p)
  if grid is None:
    raise ValueError("No readable images: " + report.summary())
  # A fixed-size model resamples the images to its input size: a position's
  # stride in the images is then their side over the grid's.
  stride = image_size[0] / grid[0] if model.fixed_input_size else layer.stride
  return ExampleSet(top, scores, positions, tuple(paths), config.layer,
                    stride, grid, tuple(image_size), report)


# ---------------------------------------------------------------------------
# Where to crop.

def receptive_field_size(model: base.Model, params, layer: str, key,
                         image_size: int | None = None,
                         mass: float = DEFAULT_RF_MASS) -> int:
  """Side of the input square that drives the centre unit of ``layer``.

  Computed from the gradient of the centre position (summed over channels)
  w.r.t. a mid-grey image with a little noise (from ``key``): with
  ``mass=1.0`` the bounding box of its support (the theoretical receptive
  field, clipped to the image); with ``mass < 1`` the smallest centred square
  holding that fraction of ``|gradient|`` (the effective receptive field,
  which is much smaller than the theoretical one in deep layers).
  """
  size = image_size or model.input_size
  image = 0.5 + 0.05 * jax.random.normal(key, (1, size, size, 3))

  def centre(x):
    acts = model.apply(params, x, layers=(layer,))[layer]
    return acts[0, acts.shape[1] // 2, acts.shape[2] // 2].sum()

  g = np.abs(np.asarray(jax.grad(centre)(image))[0]).sum(axis=-1)
  if g.max() <= 0:
    return size
  rows, cols = np.nonzero(g > 0)
  if mass >= 1.0:
    return int(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1)
  cy = int(round((rows.min() + rows.max()) / 2))
  cx = int(round((cols.min() + cols.max()) / 2))
  total = g.sum()
  for r in range(size):
    box = g[max(cy - r, 0):cy + r + 1, max(cx - r, 0):cx + r + 1]
    if box.sum() >= mass * total:
      return min(2 * r + 1, size)
  return size


def crop_box(position, stride: int, crop_size: int,
             image_size: tuple[int, int]) -> tuple[int, int, int]:
  """``(top, left, side)`` of the crop centred on a layer position.

  Position ``(i, j)`` of a layer with total ``stride`` is centred near input
  pixel ``((i + 0.5) * stride, (j + 0.5) * stride)``. The square of side
  ``min(crop_size, H, W)`` is shifted to lie inside the image.
  """
  h, w = image_size
  side = int(min(crop_size, h, w))
  cy, cx = (position[0] + 0.5) * stride, (position[1] + 0.5) * stride
  top = int(np.clip(round(cy - side / 2), 0, h - side))
  left = int(np.clip(round(cx - side / 2), 0, w - side))
  return top, left, side


def example_tiles(found: ExampleSet, direction: int, image_ids: Sequence[int],
                  crop_size: int | None = None, tile_size: int = TILE_SIZE,
                  load: Callable[[str], np.ndarray] = images_lib.load_eval
                  ) -> list[np.ndarray]:
  """Crops (or whole images if ``crop_size`` is None) around each image's max.

  Images are re-read from ``found.paths`` with ``load`` (the same function used
  in :func:`collect`, so positions line up); each tile is ``tile_size`` square.
  """
  tiles = []
  for i in image_ids:
    i = int(i)
    if i == _EMPTY:
      continue
    image = load(found.paths[i])
    if crop_size is not None:
      top, left, side = crop_box(found.positions[i, direction], found.stride,
                                 crop_size, image.shape[:2])
      image = image[top:top + side, left:left + side]
    tiles.append(plotting.resize(image, (tile_size, tile_size)))
  return tiles


def spectrum_indices(scores, quantiles: Sequence[float] = DEFAULT_QUANTILES
                     ) -> np.ndarray:
  """Image index at each quantile of ``scores`` (``[N]``, NaN = unreadable).

  Quantile ``q`` picks the image of rank ``round(q * (n - 1))`` in ascending
  order (0: the least activating, 1: the most).
  """
  scores = np.asarray(scores, np.float64)
  valid = np.flatnonzero(~np.isnan(scores))
  if valid.size == 0:
    raise ValueError("No valid scores")
  order = valid[np.argsort(scores[valid], kind="stable")]
  ranks = np.round(np.asarray(quantiles) * (valid.size - 1)).astype(int)
  return order[ranks]


def save_examples_sheet(tiles: Sequence[np.ndarray], path, titles=None,
                        beside: np.ndarray | None = None,
                        beside_title: str = "optimized",
                        ncols: int | None = None, suptitle: str | None = None):
  """Contact sheet of example tiles, optionally after an image shown beside."""
  tiles = list(tiles)
  titles = list(titles) if titles is not None else [""] * len(tiles)
  if beside is not None:
    tiles = [plotting.resize(beside, tiles[0].shape[:2])] + tiles
    titles = [beside_title] + titles
  return plotting.save_contact_sheet(tiles, path, titles=titles, ncols=ncols,
                                     suptitle=suptitle)
