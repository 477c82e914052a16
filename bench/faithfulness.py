r"""Faithfulness of the renderer on the real GoogLeNet weights (full version).

  python bench/faithfulness.py [--channels=0-15] [--size=128] [--steps=512]

For 16 channels of ``mixed4a``: renders each channel (default
parameterization and transforms) and checks that the image activates its
channel more than the best of the sample photos (centre 224 crop, same
channel, mean activation); then renders the same channels with an
unregularized pixel-space parameterization (no decorrelation, no transforms)
and compares the fraction of spectral power above 0.25 cycles/pixel. Prints one
JSON line per channel and a summary line; exits non-zero on failure.
"""

import json
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import grad_timing  # bench/ (this script's folder is on sys.path)
from atlasjax import data as data_lib
from atlasjax import images as images_lib
from atlasjax import models
from atlasjax.optvis import metrics
from atlasjax.optvis import render

_LAYER = flags.DEFINE_string("layer", "mixed4a", "Layer.")
_CHANNELS = flags.DEFINE_string("channels", "0-15", "Channels, A-B or a,b,c.")
_SIZE = flags.DEFINE_integer("size", 128, "Image size.")
_STEPS = flags.DEFINE_integer("steps", 512, "Steps.")
_PHOTOS = flags.DEFINE_integer("photos", 0, "Use only the first N photos (0 = all).")
_HF_RATIO = flags.DEFINE_float("hf_ratio", 0.5, "Required fft/pixel high-frequency ratio.")
_DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA).")


def _parse(text):
  if "-" in text:
    a, b = text.split("-")
    return list(range(int(a), int(b) + 1))
  return [int(c) for c in text.split(",")]


def main(argv):
  del argv
  layer, channels = _LAYER.value, _parse(_CHANNELS.value)
  model, params = models.load(data=_DATA.value)
  make = grad_timing.Channel(layer)
  t = time.perf_counter()
  cfg = render.RenderConfig(size=_SIZE.value, steps=_STEPS.value)
  result = render.render(model, params, make, args=jnp.array(channels), config=cfg,
                         key=jax.random.PRNGKey(0))
  images = np.asarray(result.images)
  render_s = time.perf_counter() - t
  rendered = metrics.channel_means(model, params, images, layer)[
      np.arange(len(channels)), channels]
  paths = images_lib.list_images(data_lib.sample_dir(_DATA.value))
  paths = paths[:_PHOTOS.value] if _PHOTOS.value else paths
  best = metrics.best_photo_activation(model, params, paths, layer, channels)
  pixel_cfg = render.RenderConfig(size=_SIZE.value, steps=_STEPS.value, param="pixel",
                                  decorrelate=False, transforms="none")
  pixel = np.asarray(render.render(model, params, make, args=jnp.array(channels),
                                   config=pixel_cfg, key=jax.random.PRNGKey(0)).images)
  hf_fft = metrics.high_frequency_fraction(images)
  hf_pixel = metrics.high_frequency_fraction(pixel)
  for i, c in enumerate(channels):
    print(json.dumps({"layer": layer, "channel": c, "rendered": round(float(rendered[i]), 3),
                      "best_photo": round(float(best[i]), 3),
                      "hf_fft": round(float(hf_fft[i]), 4),
                      "hf_pixel": round(float(hf_pixel[i]), 4)}))
  beats = bool(np.all(rendered > best))
  hf_ok = bool(hf_fft.mean() < _HF_RATIO.value * hf_pixel.mean())
  print(json.dumps({
      "summary": True, "channels": len(channels), "photos": len(paths),
      "size": _SIZE.value, "steps": _STEPS.value,
      "beats_best_photo": int(np.sum(rendered > best)),
      "min_ratio_rendered_over_best": round(float(np.min(rendered / best)), 3),
      "hf_fft_mean": round(float(hf_fft.mean()), 4),
      "hf_pixel_mean": round(float(hf_pixel.mean()), 4),
      "render_s": round(render_s, 1), "pass": beats and hf_ok}))
  sys.exit(0 if beats and hf_ok else 1)


if __name__ == "__main__":
  app.run(main)
