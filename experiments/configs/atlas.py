"""Presets of the atlas job: named PipelineConfigs, deltas on ONE set of defaults.

The defaults are the field defaults of the library's frozen dataclasses
(:class:`~atlasjax.atlas.pipeline.PipelineConfig` and the ``CollectConfig``,
``LayoutConfig`` and ``AtlasConfig`` it holds); the scripts' flags are
generated from those same fields (``experiments/atlas_flags.py``), so a
library call and a script run build the same atlas. Pick a preset with
``--config=NAME``; any flag given on the command line overrides one field of
it (``--config=paper --steps=512``).

Fields left to the model (``layers``, ``image_size``) are filled from its
metadata (``model.default_layer``, ``model.input_size``) when not given.
"""

from __future__ import annotations

import dataclasses

from atlasjax.atlas import pipeline

# The measured CPU-sized job the README documents (800 sample photos × 4
# crops, 10×10 and 20×20 grids, 384 steps, 1 attempt: 20 min on 2 cores).
DEFAULT = pipeline.PipelineConfig()


def _paper() -> pipeline.PipelineConfig:
  """Carter et al. (2019), as recorded in this repository's README.

  One random spatial activation per image of ~1M ImageNet training images
  (``--images=/data/imagenet/train``, 1.28M photos, one crop each), layout
  fitted on a 10⁵ subsample (the full fit needs 38 min / 17.7 GB at 10⁶,
  bench/RESULTS.md), grids 20–160 with densities falling as cells shrink,
  80 px icons, 1024 steps, best of 4 attempts. Needs a GPU.
  """
  base = DEFAULT
  return dataclasses.replace(
      base,
      collect=dataclasses.replace(base.collect, crops_per_image=1,
                                  batch_size=256, shard_images=4096),
      layout=dataclasses.replace(base.layout, fit_sample=100_000),
      atlas=dataclasses.replace(base.atlas, grid_sizes=(20, 40, 80, 160),
                                min_density=(10, 5, 3, 2), icon_size=80,
                                steps=1024, attempts=4))


PRESETS: dict[str, pipeline.PipelineConfig] = {
    "default": DEFAULT,
    "paper": _paper(),
}


def get(name: str) -> pipeline.PipelineConfig:
  if name not in PRESETS:
    raise ValueError(f"Unknown --config={name!r}; presets: {', '.join(PRESETS)}")
  return PRESETS[name]
