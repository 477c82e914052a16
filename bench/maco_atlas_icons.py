r"""Atlas icons with ``param="maco"`` against the default ``fft``, by icon
self-retrieval — a reduced setting that fits a shared 2-core CPU.

  python bench/maco_atlas_icons.py --icons=24 --icon_size=64 --steps=128 --out=/tmp/icons

Directions: ``--layer`` activation vectors at the centre of ``--icons`` sample
photos (every 800 / N-th photo, 224 px evaluation crop), unwhitened. Icons
are rendered exactly as the atlas renders them (``render_atlas.render_icons``,
the paper's cosine objective, ``atlas`` transforms) with each
parameterization, and scored by ``render_atlas.icon_fidelity``: the share of
icons whose centre activation is closest (cosine) to their own direction
among all N, and the mean cosine. One JSON line per parameterization.
"""

import dataclasses
import json
import pathlib
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import machine  # bench/ (this script's folder is on sys.path)
from atlasjax import data as data_lib
from atlasjax import images as images_lib
from atlasjax import models
from atlasjax import plotting
from atlasjax.atlas import render_atlas

_ICONS = flags.DEFINE_integer("icons", 24, "Number of directions / icons.")
_SIZE = flags.DEFINE_integer("icon_size", 64, "Icon side.")
_STEPS = flags.DEFINE_integer("steps", 128, "Steps per icon.")
_LAYER = flags.DEFINE_string("layer", "mixed4c", "Layer.")
_PARAMS = flags.DEFINE_list("params", ["fft", "maco"], "Parameterizations.")
_OUT = flags.DEFINE_string("out", None, "Folder for icon sheets (optional).")


def directions(model, params, layer, n) -> np.ndarray:
  paths = images_lib.list_images(data_lib.sample_dir())
  paths = paths[:: max(1, len(paths) // n)][:n]
  x = jnp.asarray(np.stack([images_lib.load_for_model(p, model.input_size)
                            for p in paths]))
  a = np.asarray(model.apply(params, x, layers=(layer,))[layer])
  return a[:, a.shape[1] // 2, a.shape[2] // 2].astype(np.float32)


def main(argv):
  del argv
  model, params = models.load("bvlc_googlenet")
  layer = _LAYER.value
  dirs = directions(model, params, layer, _ICONS.value)
  for kind in _PARAMS.value:
    config = dataclasses.replace(render_atlas.AtlasConfig(), layer=layer,
                                 icon_size=_SIZE.value, steps=_STEPS.value,
                                 param=kind, chunk_size=len(dirs))
    t0 = time.perf_counter()
    icons = render_atlas.render_icons(model, params, layer, dirs, None, config,
                                      jax.random.PRNGKey(0))
    seconds = time.perf_counter() - t0
    fidelity = render_atlas.icon_fidelity(model, params, layer, icons, dirs, None)
    if _OUT.value:
      out = pathlib.Path(_OUT.value)
      out.mkdir(parents=True, exist_ok=True)
      plotting.save_png(plotting.grid([i / 255.0 for i in icons], ncols=8),
                        out / f"icons_{kind}.png")
    print(json.dumps({"workload": "atlas_icons", "param": kind, "layer": layer,
                      "icons": len(dirs), "icon_size": _SIZE.value,
                      "steps": _STEPS.value, **fidelity, "render_s": seconds,
                      "machine": machine.describe()}), flush=True)


if __name__ == "__main__":
  app.run(main)
