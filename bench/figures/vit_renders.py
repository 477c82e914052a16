r"""Feature visualizations of the distilled ViT at three depths (Ghiasi et al. 2022).

  nice -n 5 python bench/figures/vit_renders.py [--steps=256] [--units=5] \
      [--out=docs/images/vit_distilled_features.jpg]

Ghiasi et al., "What do Vision Transformers Learn? A Visual Exploration"
(2022): the objective is one unit of a block's MLP hidden layer *after* GELU,
averaged over the patch tokens — here ``channel("blockK/mlp/fc2:input", u)``,
since from_flax puts the patch tokens on their grid and ``channel`` averages
it — under strong augmentation: large jitter, zoom and rotation, random
flips and a random colour shift per step (their ``ColorJitter``: a random
shift of each channel's mean and a random log-scale of its spread), which ViTs
need more than CNNs. Units: per layer, the ``--units`` whose patch-mean
activation varies most across the first 64 sample photos (selective ones, not
dead ones). One JSON line: the objective before/after, image-steps/s, load.
"""

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

from atlasjax import data as data_lib
from atlasjax import display
from atlasjax import images as images_lib
from atlasjax import models
from atlasjax.optvis import objectives
from atlasjax.optvis import render
from atlasjax.optvis import transform as T

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # bench/
import machine  # pylint: disable=g-import-not-at-top

MODEL = "vit_distilled"
DEPTHS = (1, 3, 5)
HIDDEN = "block{}/mlp/fc2:input"
SELECTION_PHOTOS = 64
# Strong augmentation (Ghiasi et al.'s jitter, flip and colour shift, with
# Lucid's zoom/rotation added): ranges in pixels of a 112 px render.
JITTER = 12
SCALES = tuple(np.linspace(0.8, 1.2, 9))
ANGLES = tuple(range(-15, 16, 3))
COLOR_MEAN_SHIFT = 0.15   # ± per channel, in [0, 1] units
COLOR_LOG_SCALE = 0.5     # spread scaled by exp(±0.5)

_STEPS = flags.DEFINE_integer("steps", 256, "Adam steps.")
_UNITS = flags.DEFINE_integer("units", 5, "Units per depth.")
_SIZE = flags.DEFINE_integer("size", 112, "Render side (the model's input).")
_OUT = flags.DEFINE_string("out", "docs/images/vit_distilled_features.jpg",
                           "Contact sheet (rows: blocks 1, 3, 5).")
_DATA = flags.DEFINE_string("data", None, "Data root.")
_WEIGHTS = flags.DEFINE_string("weights", None, "vit_distilled weights "
                               "(default: the cached file).")


def random_flip() -> T.Transform:
  def apply(key, img):
    return jnp.where(jax.random.bernoulli(key), img[:, ::-1], img)
  return apply


def color_shift(mean: float, log_scale: float) -> T.Transform:
  """Ghiasi et al.'s ColorJitter in [0, 1] units: per-channel shift and spread."""
  def apply(key, img):
    k_mean, k_scale = jax.random.split(key)
    shift = jax.random.uniform(k_mean, (img.shape[-1],), minval=-mean, maxval=mean)
    scale = jnp.exp(jax.random.uniform(k_scale, (img.shape[-1],),
                                       minval=-log_scale, maxval=log_scale))
    return (img - 0.5) * scale + 0.5 + shift
  return apply


def strong(size: int) -> T.Transform:
  return T.compose(
      T.random_affine(jitter_before=JITTER, scales=SCALES, angles=ANGLES,
                      jitter_after=JITTER // 3, out_size=size, fill=T.FILL_NOISE),
      random_flip(), color_shift(COLOR_MEAN_SHIFT, COLOR_LOG_SCALE))


def selective_units(model, params, layer, n, data):
  """The ``n`` units whose patch-mean activation varies most across photos."""
  paths = images_lib.list_images(data_lib.sample_dir(data))[:SELECTION_PHOTOS]
  photos = np.stack([images_lib.load_for_model(p, model.input_size) for p in paths])
  acts = model.apply(params, jnp.asarray(photos), layers=(layer,))[layer]
  return np.argsort(-np.asarray(acts.mean(axis=(1, 2)).std(0)))[:n]


def rows_sheet(images, per_row):
  """``[N, s, s, 3]`` → one row per ``per_row`` images (a depth per row)."""
  n, size = images.shape[0], images.shape[1]
  rows = -(-n // per_row)
  pad = display.SHEET_PAD
  out = np.full((rows * (size + pad) + pad, per_row * (size + pad) + pad, 3),
                display.SHEET_PAD_VALUE, np.float32)
  for i in range(n):
    r, c = divmod(i, per_row)
    out[pad + r * (size + pad):][:size, pad + c * (size + pad):][:, :size] = images[i, ..., :3]
  return out


def to_uint8(image):
  return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def main(argv):
  del argv
  model, params = models.load(MODEL, _DATA.value, _WEIGHTS.value)
  layers, units = [], []
  for depth in DEPTHS:
    layer = HIDDEN.format(depth)
    chosen = selective_units(model, params, layer, _UNITS.value, _DATA.value)
    layers += [layer] * len(chosen)
    units += [int(u) for u in chosen]
  config = render.RenderConfig(size=_SIZE.value, steps=_STEPS.value,
                               chunk_size=len(units), redirect_relu_steps=0)
  args = {"depth": np.repeat(np.arange(len(DEPTHS)), _UNITS.value),
          "unit": np.asarray(units, np.int32)}

  def make(arg):
    # One objective per depth, picked by the (traced) depth index: the batch
    # renders all three layers in one program.
    terms = [objectives.channel(HIDDEN.format(d), arg["unit"]) * (arg["depth"] == i)
             for i, d in enumerate(DEPTHS)]
    return objectives.sum_objectives(terms)

  t0 = time.time()
  result = render.render(model, params, make, args, config,
                         key=jax.random.PRNGKey(0), transforms=strong(_SIZE.value))
  images = np.asarray(result.images)
  seconds = time.time() - t0
  losses = np.asarray(result.losses)
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(to_uint8(rows_sheet(images, _UNITS.value))).save(out, quality=90)
  print(json.dumps({
      "workload": "vit_renders", "model": MODEL, "layers": sorted(set(layers)),
      "units": units, "steps": _STEPS.value, "size": _SIZE.value,
      "objective_first_steps": [round(float(x), 3) for x in -losses[:, :8].mean(1)],
      "objective_last_steps": [round(float(x), 3) for x in -losses[:, -8:].mean(1)],
      "final_values": [round(float(x), 3) for x in np.asarray(result.values)],
      "seconds_with_compile": round(seconds, 1),
      "image_steps_per_s_with_compile": round(len(units) * _STEPS.value / seconds, 2),
      "out": str(out), "machine": machine.describe()}))


if __name__ == "__main__":
  app.run(main)
