"""Faithfulness on the real GoogLeNet, at a size that runs in CI.

The full version (16 channels, 128 px, 512 steps, all 800 photos) is
``bench/faithfulness.py``; here: 3 channels of ``mixed4a`` at 80 px with 96
steps, against every 4th sample photo (200 photos, centre crop).
"""

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax import images as images_lib
from atlasjax.optvis import metrics
from atlasjax.optvis import objectives as obj
from atlasjax.optvis import render

LAYER = "mixed4a"
# Any channels will do; 508 (dog snouts on these weights) replaces the
# Distill articles' 476, which names a feature of Lucid's InceptionV1.
CHANNELS = (97, 143, 508)
SIZE, STEPS = 80, 96
PHOTO_STRIDE = 4


def _channel(c):
  return obj.channel(LAYER, c)


def test_renders_beat_photos_and_fft_has_less_high_frequency(googlenet, sample_dir):
  model, params = googlenet
  cfg = render.RenderConfig(size=SIZE, steps=STEPS)
  result = render.render(model, params, _channel, args=jnp.array(CHANNELS), config=cfg,
                         key=jax.random.PRNGKey(0))
  rendered = metrics.channel_means(model, params, np.asarray(result.images), LAYER)
  rendered = rendered[np.arange(len(CHANNELS)), list(CHANNELS)]
  photos = images_lib.list_images(sample_dir)[::PHOTO_STRIDE]
  best = metrics.best_photo_activation(model, params, photos, LAYER, CHANNELS)
  assert np.all(rendered > best), (rendered, best)

  pixel_cfg = render.RenderConfig(size=SIZE, steps=STEPS, param="pixel",
                                  decorrelate=False, transforms="none")
  pixel = render.render(model, params, _channel, args=jnp.array(CHANNELS),
                        config=pixel_cfg, key=jax.random.PRNGKey(0))
  hf_fft = metrics.high_frequency_fraction(result.images)
  hf_pixel = metrics.high_frequency_fraction(pixel.images)
  assert hf_fft.mean() < 0.5 * hf_pixel.mean(), (hf_fft, hf_pixel)
