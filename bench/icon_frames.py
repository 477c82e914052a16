r"""Full-frame atlas icons against the notebook's crops: border, fidelity, time.

  python bench/icon_frames.py [--limit=200 --grid=10 --min_density=2 --steps=128 --cells=32]

Collects ``mixed4c`` vectors from the first ``--limit`` sample photos (no
attributions), lays them out and grids them as ``bench/atlas_bench.py`` does
(cached in ``--workdir``), then renders the same cells' icons twice in one
process, interleaved:

  before  the previous icon path: pad 2 (white), jitters 4, 4, 8, 8, 8, zoom
          and rotation as two resamplings clamped to the edge, jitter 2 — a
          50 px view of the icon's middle — then grey padding to 64 px (the
          renderer's former ``_fit_min_size``);
  after   ``transform.atlas``: the whole icon resized onto a 50 px view, one
          resampling, uniform noise outside.

Per variant: border contrast (per icon, the standard deviation of the pixel
values in the outer tenth of the icon over that of its central half-side
square, averaged over RGB; the mean over icons), icon fidelity (retrieval and
mean cosine as ``render_atlas.icon_fidelity`` measures them, among the
rendered cells) and render time per icon (the second of two calls, compile
excluded). Writes ``--png`` with each cell's before/after icons side by side.
"""

import dataclasses
import json
import os
import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
import machine  # pylint: disable=g-import-not-at-top
from atlasjax import data as data_lib
from atlasjax import models
from atlasjax.atlas import collect
from atlasjax.atlas import grid as grid_lib
from atlasjax.atlas import layout
from atlasjax.atlas import render_atlas
from atlasjax.optvis import render
from atlasjax.optvis import transform as tr

_LIMIT = flags.DEFINE_integer("limit", 200, "Sample photos collected.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/icon_frames", "Cached collection.")
_GRID = flags.DEFINE_integer("grid", 10, "Grid size.")
_DENSITY = flags.DEFINE_integer("min_density", 2, "Minimum cell count.")
_CELLS = flags.DEFINE_integer("cells", 32, "Cells rendered (the densest).")
_STEPS = flags.DEFINE_integer("steps", 128, "Optimisation steps.")
_ICON = flags.DEFINE_integer("icon_size", 80, "Icon side.")
_PNG = flags.DEFINE_string("png", "docs/icon_frames.png", "Side-by-side image.")
_LAYER = "mixed4c"
# The former renderer padded every view up to GoogLeNet's old minimum input.
OLD_MIN_SIZE = 64
BORDER_FRACTION = 0.1


def old_transform():
  """The icon path before full-frame icons, including the grey padding."""
  return tr.compose(
      tr.pad(2, "constant", 1.0), tr.jitter(4), tr.jitter(4), tr.jitter(8),
      tr.jitter(8), tr.jitter(8), tr.random_scale(tr.ATLAS_SCALES),
      tr.random_rotate(tr.ATLAS_ANGLES), tr.jitter(2),
      tr.crop_or_pad_to(OLD_MIN_SIZE))


def border_contrast(icons: np.ndarray) -> np.ndarray:
  """Per icon: std of the outer tenth over std of the central square."""
  x = icons.astype(np.float64) / 255.0
  n = x.shape[1]
  t = max(1, int(round(n * BORDER_FRACTION)))
  ring = np.ones((n, n), bool)
  ring[t:-t, t:-t] = False
  q = n // 4
  border = x[:, ring].std(axis=1).mean(-1)
  centre = x[:, q:n - q, q:n - q].reshape(len(x), -1, 3).std(axis=1).mean(-1)
  return border / np.maximum(centre, 1e-6)


def prepare(model, params):
  workdir = pathlib.Path(_WORKDIR.value)
  if not (workdir / "layout" / "coords.npy").exists():
    photos = workdir / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for p in sorted(data_lib.sample_dir().glob("*"))[:_LIMIT.value]:
      if not (photos / p.name).exists():
        os.symlink(p.resolve(), photos / p.name)
    collect.run(collect.CollectConfig(crops_per_image=4, attributions=False),
                model, params, photos, workdir)
    layout.run(layout.LayoutConfig(), workdir)
  c = collect.Collection.open(workdir)
  vectors = np.asarray(c.vectors_memmap(_LAYER))
  xy = np.load(workdir / "layout" / "coords.npy")
  g = grid_lib.build_grid(xy, vectors, _GRID.value, _DENSITY.value)
  whitening = np.load(workdir / "layout" / "whitening.npy")
  order = np.argsort(-np.asarray(g.count), kind="stable")[:_CELLS.value]
  return g.directions[order], whitening


def main(argv):
  del argv
  model, params = models.load()
  directions, whitening = prepare(model, params)
  n = len(directions)
  config = render_atlas.AtlasConfig(icon_size=_ICON.value, steps=_STEPS.value,
                                    attempts=1, chunk_size=n)
  cfg = dataclasses.replace(config.render_config(), chunk_size=n)
  make = render_atlas.make_atlas_objective(_LAYER, jnp.asarray(whitening),
                                           config.cossim_pow)
  variants = {"before": old_transform(), "after": tr.preset("atlas", _ICON.value)}
  args = jnp.asarray(directions)
  key = jax.random.PRNGKey(0)
  seconds = {v: [] for v in variants}
  icons = {}
  for _ in range(2):        # first call compiles; the second is timed
    for name, transform in variants.items():
      t = time.perf_counter()
      result = render.render(model, params, make, args=args, config=cfg, key=key,
                             transforms=transform)
      jax.block_until_ready(result.images)
      seconds[name].append(time.perf_counter() - t)
      icons[name] = np.asarray(np.clip(np.asarray(result.images) * 255 + 0.5, 0, 255),
                               np.uint8)
  rows = {}
  for name in variants:
    fid = render_atlas.icon_fidelity(model, params, _LAYER, icons[name],
                                     directions, whitening)
    contrast = border_contrast(icons[name])
    view = jax.eval_shape(variants[name], key, jax.ShapeDtypeStruct(
        (_ICON.value, _ICON.value, 3), jnp.float32)).shape[0]
    rows[name] = {
        "bench": "icon_frames", "variant": name, "cells": n, "steps": _STEPS.value,
        "icon_size": _ICON.value, "network_side": view,
        "border_contrast_mean": round(float(contrast.mean()), 3),
        "border_contrast_median": round(float(np.median(contrast)), 3),
        "retrieval": round(fid["retrieval"], 3),
        "mean_cosine": round(fid["mean_cosine"], 3),
        "seconds_per_icon": round(seconds[name][-1] / n, 3),
        "image_steps_per_sec": round(n * _STEPS.value / seconds[name][-1], 1),
        "photos": _LIMIT.value, "grid": _GRID.value, "min_density": _DENSITY.value,
        "machine": machine.describe()}
    print(json.dumps(rows[name]), flush=True)
  print(json.dumps({"bench": "icon_frames", "time_ratio_after_over_before": round(
      seconds["after"][-1] / seconds["before"][-1], 3)}), flush=True)
  side = _ICON.value
  cols = 8
  rows_n = -(-n // cols)
  gap = 4
  canvas = Image.new("RGB", (cols * (2 * side + 3 * gap), rows_n * (side + gap)),
                     (255, 255, 255))
  for i in range(n):
    x0 = (i % cols) * (2 * side + 3 * gap)
    y0 = (i // cols) * (side + gap)
    canvas.paste(Image.fromarray(icons["before"][i]), (x0, y0))
    canvas.paste(Image.fromarray(icons["after"][i]), (x0 + side + gap, y0))
  pathlib.Path(_PNG.value).parent.mkdir(parents=True, exist_ok=True)
  canvas.save(_PNG.value)
  print(json.dumps({"bench": "icon_frames", "png": _PNG.value,
                    "layout": "pairs: before (left) | after (right)"}), flush=True)


if __name__ == "__main__":
  app.run(main)
