"""The grain loader: the same batches and crops for any threads or workers."""

import functools

import numpy as np
from PIL import Image

from atlasjax.atlas import collect
from atlasjax.atlas import loader


def test_same_batches_for_any_thread_or_worker_count(tmp_path):
  rng = np.random.default_rng(0)
  paths = []
  for i in range(7):
    path = tmp_path / f"img_{i}.png"
    Image.fromarray(rng.integers(0, 256, (30 + i, 41, 3), np.uint8)).save(path)
    paths.append(str(path))
  broken = tmp_path / "img_7.jpg"
  broken.write_bytes(b"not an image")
  paths.append(str(broken))
  # Shards of 3 photos, batches of 2: batches never cross a shard boundary.
  specs = loader.batch_specs([0, 1, 2], 3, len(paths), 2)
  assert [(s.shard, s.lo, s.hi) for s in specs] == [
      (0, 0, 2), (0, 2, 3), (1, 3, 5), (1, 5, 6), (2, 6, 8)]
  box = functools.partial(collect.crop_box, 5)
  runs = {(threads, workers): list(loader.iterate(specs, paths, box, 3, 16,
                                                  threads=threads, workers=workers))
          for threads, workers in ((1, 0), (3, 0), (1, 2))}
  reference = runs[(1, 0)]
  assert [b["index"].tolist() for b in reference] == [[0, 1], [2], [3, 4], [5], [6]]
  assert reference[-1]["failed"].tolist() == [7]
  assert "img_7.jpg" in reference[-1]["reasons"][0]
  # Crops are the boxes that crop_box gives for (seed, image, crop).
  first = reference[0]
  assert first["crops"].shape == (2, 3, 16, 16, 3) and first["crops"].dtype == np.uint8
  with Image.open(paths[1]) as image:
    expected = np.asarray(image.convert("RGB").resize(
        (16, 16), Image.BILINEAR, box=collect.crop_box(5, 1, 2, 3, *image.size)))
  np.testing.assert_array_equal(first["crops"][1, 2], expected)
  for key, batches in runs.items():
    assert len(batches) == len(reference), key
    for got, want in zip(batches, reference):
      for field in ("shard", "index", "crops", "boxes", "failed"):
        np.testing.assert_array_equal(got[field], want[field], err_msg=f"{key} {field}")
