r"""MaCo next to fft for a few GoogLeNet units: the README's unit figure.

  python bench/figures/maco_units.py --out=docs/images/maco_vs_fft_units.jpg

Renders ``channel(--layer, c)`` for each of ``--channels`` with each
parameterization in ``--params`` (``name:lr`` pairs; MaCo's phase wants a
larger step than fft's, see bench/RESULTS.md issue 20), the same size, steps,
transforms and key, one batched render per parameterization. Writes one row
per parameterization (fft on top) as a JPEG and prints one JSON line per
parameterization: the mean objective reached, seconds, and the machine with
its load.
"""

import dataclasses
import json
import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # bench/
import machine  # noqa: E402  pylint: disable=g-import-not-at-top
from atlasjax import models
from atlasjax import plotting
from atlasjax.optvis import objectives as obj
from atlasjax.optvis import render

_LAYER = flags.DEFINE_string("layer", "mixed4a", "Layer of the units.")
_CHANNELS = flags.DEFINE_list("channels", ["0", "97", "155", "222", "308", "460"],
                              "Channels of --layer.")
_PARAMS = flags.DEFINE_list("params", ["fft:0.05", "maco:0.25"],
                            "Parameterizations as name:lr, one row each.")
_SIZE = flags.DEFINE_integer("size", 128, "Image side.")
_STEPS = flags.DEFINE_integer("steps", 128, "Adam steps (the same for every row).")
_TRANSFORMS = flags.DEFINE_string("transforms", "standard", "Transforms preset.")
_OUT = flags.DEFINE_string("out", None, "JPEG to write (optional).")
# Keeps the README figure under the docs' 150 KB limit at 6 × 2 images.
JPEG_QUALITY = 88


def main(argv):
  del argv
  model, params = models.load("bvlc_googlenet")
  channels = jnp.asarray([int(c) for c in _CHANNELS.value])
  make = lambda c: obj.channel(_LAYER.value, c)
  rows = []
  for spec in _PARAMS.value:
    kind, lr = spec.split(":")
    config = dataclasses.replace(render.RenderConfig(), size=_SIZE.value,
                                 steps=_STEPS.value, lr=float(lr), param=kind,
                                 transforms=_TRANSFORMS.value)
    t0 = time.perf_counter()
    result = render.render(model, params, make, channels, config,
                           jax.random.PRNGKey(0))
    values = np.asarray(result.values)
    seconds = time.perf_counter() - t0
    rows.append(np.asarray(result.images))
    print(json.dumps({"workload": "maco_units", "param": kind, "lr": float(lr),
                      "layer": _LAYER.value, "channels": _CHANNELS.value,
                      "size": _SIZE.value, "steps": _STEPS.value,
                      "objective": [round(float(v), 3) for v in values],
                      "objective_mean": float(values.mean()), "render_s": seconds,
                      "machine": machine.describe()}), flush=True)
  if _OUT.value:
    sheet = plotting.grid(np.concatenate(rows), ncols=len(channels), pad=2,
                          pad_value=1.0)
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(plotting.to_uint8(sheet)).save(out, quality=JPEG_QUALITY)


if __name__ == "__main__":
  app.run(main)
