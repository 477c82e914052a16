"""Collection's input pipeline: decode, crop and resize photos with grain.

At paper scale (10⁶ photos) collection is limited by decoding and resizing
JPEGs, not by the network. This module feeds collection through grain's
dataset API, so decoding runs ahead of the forward pass on threads of this
process (``threads``) or on ``workers`` separate processes, and the output
order is fixed:

* the elements are *batch specs*: consecutive image ranges that never cross a
  shard boundary, in shard order, exactly the batches a plain loop would make;
* each spec is decoded as a unit; its crops come from ``box_fn(image index,
  crop index, …)``, which derives every random choice from the seed and the
  image's global index, never from the worker that decodes it;
* grain's ``to_iter_dataset`` and ``mp_prefetch`` preserve element order.

So the batches, and hence the collected rows, are identical for any number of
threads or workers. Crops travel between processes as ``uint8`` (4× less shared
memory than float32) and are scaled to [0, 1] by the consumer, with the same
float32 division a single-process loop would do. Unreadable files do not stop
the stream: each spec reports their indices and reasons.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Sequence

from absl import flags
import grain
import numpy as np
from PIL import Image

from atlasjax import images as images_lib

# Decoded batches kept in flight per thread; bounds memory for any input size.
PREFETCH_PER_THREAD = 2
# Random crops are drawn in normalised image coordinates: area fraction and
# aspect ratio of the box relative to the (unit-square) image.
DEFAULT_CROP_SCALE = (0.1, 1.0)
DEFAULT_CROP_ASPECT = (3 / 4, 4 / 3)


def rng(seed: int, *ids: int) -> np.random.Generator:
  """The generator of one ``(seed, image, crop, …)`` draw."""
  return np.random.default_rng([seed, *ids])


def crop_box(seed: int, image_index: int, crop_index: int, crops_per_image: int,
             width: int, height: int, scale=DEFAULT_CROP_SCALE,
             aspect=DEFAULT_CROP_ASPECT) -> tuple[float, float, float, float]:
  """Pixel box ``(x0, y0, x1, y1)`` of one crop.

  With one crop per image it is the standard evaluation crop (the centre square
  of side 224/256 of the shorter side); otherwise a random box whose area is a
  ``scale`` fraction and aspect ``aspect`` in normalised coordinates.
  """
  if crops_per_image == 1:
    side = min(width, height) * images_lib.EVAL_CROP / images_lib.EVAL_RESIZE
    x0, y0 = (width - side) / 2, (height - side) / 2
    return (x0, y0, x0 + side, y0 + side)
  draw = rng(seed, image_index, crop_index)
  area = draw.uniform(*scale)
  log_aspect = draw.uniform(np.log(aspect[0]), np.log(aspect[1]))
  w = min(1.0, np.sqrt(area * np.exp(log_aspect)))
  h = min(1.0, np.sqrt(area / np.exp(log_aspect)))
  u, v = draw.uniform(0, 1 - w), draw.uniform(0, 1 - h)
  return (u * width, v * height, (u + w) * width, (v + h) * height)


@dataclasses.dataclass(frozen=True)
class BatchSpec:
  """Images ``lo … hi-1`` (global indices) of shard ``shard``."""
  shard: int
  lo: int
  hi: int


def batch_specs(shards: Sequence[int], shard_images: int, n_images: int,
                images_per_batch: int) -> list[BatchSpec]:
  """The batches of ``shards``, in order, each within one shard."""
  specs = []
  for k in shards:
    lo, hi = k * shard_images, min((k + 1) * shard_images, n_images)
    specs += [BatchSpec(k, s, min(s + images_per_batch, hi))
              for s in range(lo, hi, images_per_batch)]
  return specs


class DecodeBatch(grain.transforms.Map):
  """``BatchSpec -> dict``: the spec's crops as uint8, and what failed.

  A module-level class so that grain can pickle it into worker processes.
  ``box_fn(image_index, crop_index, crops_per_image, width, height)`` gives a
  crop's pixel box.
  """

  def __init__(self, paths: Sequence[str], box_fn: Callable[..., tuple],
               crops_per_image: int, image_size: int):
    self.paths = list(paths)
    self.box_fn = box_fn
    self.crops_per_image = crops_per_image
    self.image_size = image_size

  def map(self, spec: BatchSpec) -> dict:
    """Decodes, crops and resizes the photos of one batch; unreadable ones are reported, not
    raised.
    """
    size, kc = self.image_size, self.crops_per_image
    good, crops, boxes, failed, reasons = [], [], [], [], []
    for i in range(spec.lo, spec.hi):
      try:
        image = images_lib.load_pil(self.paths[i])
      except images_lib.ImageReadError as e:
        failed.append(i)
        reasons.append(str(e.__cause__ or e))
        continue
      image_boxes = [self.box_fn(i, c, kc, *image.size) for c in range(kc)]
      crops.append(np.stack([
          np.asarray(image.resize((size, size), Image.BILINEAR, box=box))
          for box in image_boxes]))
      boxes.append(image_boxes)
      good.append(i)
    return {
        "shard": np.int32(spec.shard),
        "index": np.asarray(good, np.int32),
        "crops": (np.stack(crops) if crops
                  else np.zeros((0, kc, size, size, 3), np.uint8)),
        "boxes": np.asarray(boxes, np.float32).reshape(len(good), kc, 4),
        "failed": np.asarray(failed, np.int32),
        "reasons": list(reasons),
    }


def iterate(specs: Sequence[BatchSpec], paths: Sequence[str],
            box_fn: Callable[..., tuple], crops_per_image: int, image_size: int,
            threads: int = 4, workers: int = 0) -> Iterator[dict]:
  """Decoded batches for ``specs``, in order (see :class:`DecodeBatch`).

  ``threads`` decode ahead inside each process that reads; ``workers > 0``
  moves decoding into that many grain worker processes.
  """
  if not specs:
    return iter(())
  dataset = grain.MapDataset.source(list(specs)).map(
      DecodeBatch(paths, box_fn, crops_per_image, image_size))
  threads = max(1, threads)
  dataset = dataset.to_iter_dataset(grain.ReadOptions(
      num_threads=threads, prefetch_buffer_size=PREFETCH_PER_THREAD * threads))
  if workers > 0:
    if not flags.FLAGS.is_parsed():
      # grain's worker start-up reads its own absl flags; outside an absl
      # main (tests, notebooks) let it see their defaults.
      flags.FLAGS.mark_as_parsed()
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=workers, per_worker_buffer_size=PREFETCH_PER_THREAD))
  return iter(dataset)


__all__ = ["BatchSpec", "DecodeBatch", "batch_specs", "crop_box", "iterate",
           "DEFAULT_CROP_SCALE", "DEFAULT_CROP_ASPECT"]
