r"""Gorton's question on mixed3b: which dictionary features, and which neurons,
look like curve detectors? Scores and pictures.

  nice -n 5 python bench/figures/sae_curves.py --dictionary=/tmp/sae_layers/mixed3b/dictionary.npz \
      --out=docs/images/mixed3b_curves.jpg

Every neuron of ``mixed3b`` and every feature of a dictionary trained on it
(``bench/sae_layers.py``) is shown synthetic arcs (3 radii × 24 orientations)
and straight lines (12 orientations), centred in a 224 px image
(:mod:`atlasjax.features.curves`); its curve selectivity is its largest arc
response over its largest line response, read at the centre of the layer.
Units the stimuli barely drive (largest arc response below the unit's mean on
photos) are left out. The ``--top`` most selective neurons and features are
rendered in one batch each (neurons: channel objective; features: decoder
direction) and laid out in two rows, each render above the arc that drives the
unit most. One JSON line: how many neurons and features pass selectivity
thresholds, the machine and its load.
"""

import json
import os
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/
import machine  # noqa: E402

from atlasjax import models  # noqa: E402
from atlasjax.features import curves  # noqa: E402
from atlasjax.features import objectives as feature_objectives  # noqa: E402
from atlasjax.features import positions as positions_lib  # noqa: E402
from atlasjax.features import sae  # noqa: E402
from atlasjax.features import store  # noqa: E402
from atlasjax.optvis import objectives  # noqa: E402
from atlasjax.optvis import render  # noqa: E402

_DICTIONARY = flags.DEFINE_string("dictionary", None, "mixed3b dictionary.npz.", required=True)
_HELDOUT = flags.DEFINE_string("heldout", None, "Held-out positions folder "
                               "(default: beside the dictionary).")
_LAYER = flags.DEFINE_string("layer", "mixed3b", "Layer.")
_TOP = flags.DEFINE_integer("top", 8, "Units rendered per row.")
_SIZE = flags.DEFINE_integer("size", 96, "Render side.")
_STEPS = flags.DEFINE_integer("steps", 256, "Render steps.")
_OUT = flags.DEFINE_string("out", "/tmp/mixed3b_curves.jpg", "Figure path.")
THRESHOLDS = (2.0, 4.0, 8.0)
TILE_GAP = 4
LABEL_H = 14


def responses(model, params, layer, images, d):
  """``(neurons [N, C], features [N, F])`` at the centre of ``layer``."""
  acts = np.asarray(jax.jit(lambda x: model.apply(params, x, layers=(layer,))[layer])(
      jnp.asarray(images)))
  n, h, w, c = acts.shape
  codes = np.asarray(sae.encode(d, acts.reshape(-1, c))).reshape(n, h, w, -1)
  return curves.centre(acts), curves.centre(codes)


def pick(arc_r, line_r, photo_mean, top):
  score = curves.selectivity(arc_r, line_r)
  driven = arc_r.max(0) > photo_mean
  score = np.where(driven, score, 0.0)
  return np.argsort(-score, kind="stable")[:top], score


def tile_row(renders, stimuli, names):
  s = renders.shape[1]
  row = Image.new("RGB", (len(renders) * (s + TILE_GAP), 2 * s + LABEL_H + TILE_GAP), "white")
  draw = ImageDraw.Draw(row)
  for i, (r, st, name) in enumerate(zip(renders, stimuli, names)):
    x = i * (s + TILE_GAP)
    row.paste(Image.fromarray(store.to_uint8(r)), (x, 0))
    row.paste(Image.fromarray(store.to_uint8(st)).resize((s, s)), (x, s + TILE_GAP))
    draw.text((x + 2, 2 * s + TILE_GAP), name, fill="black")
  return row


def main(argv):
  del argv
  model, params = models.load()
  d = sae.load(_DICTIONARY.value)
  held = positions_lib.Positions(_HELDOUT.value or os.path.join(
      os.path.dirname(_DICTIONARY.value), "positions", "heldout")).all()
  neuron_mean = held.mean(0)
  feature_mean = np.asarray(sae.encode(d, held)).mean(0)
  arcs, lines = curves.stimuli(model.input_size)
  arc_n, arc_f = responses(model, params, _LAYER.value, arcs, d)
  line_n, line_f = responses(model, params, _LAYER.value, lines, d)
  top_n, score_n = pick(arc_n, line_n, neuron_mean, _TOP.value)
  top_f, score_f = pick(arc_f, line_f, feature_mean, _TOP.value)
  config = render.RenderConfig(size=_SIZE.value, steps=_STEPS.value)
  layer = _LAYER.value
  neurons = render.render(model, params, lambda c: objectives.channel(layer, c),
                          args=jnp.asarray(top_n), config=config).images
  features = feature_objectives.render_features(
      model, params, d, layer, top_f, config=config).images
  rows = [tile_row(np.asarray(neurons), arcs[arc_n[:, top_n].argmax(0)],
                   [f"n{c} {score_n[c]:.1f}" for c in top_n]),
          tile_row(np.asarray(features), arcs[arc_f[:, top_f].argmax(0)],
                   [f"f{f} {score_f[f]:.1f}" for f in top_f])]
  sheet = Image.new("RGB", (rows[0].width, rows[0].height * 2 + TILE_GAP), "white")
  sheet.paste(rows[0], (0, 0))
  sheet.paste(rows[1], (0, rows[0].height + TILE_GAP))
  sheet.save(_OUT.value, quality=88)
  print(json.dumps({
      "workload": "sae_curves", "layer": layer, "features": d.features, "k": d.k,
      "neurons": int(arc_n.shape[1]),
      "neurons_above": {str(t): int((score_n > t).sum()) for t in THRESHOLDS},
      "features_above": {str(t): int((score_f > t).sum()) for t in THRESHOLDS},
      "top_neurons": [[int(c), round(float(score_n[c]), 2)] for c in top_n],
      "top_features": [[int(f), round(float(score_f[f]), 2)] for f in top_f],
      "figure": _OUT.value, "machine": machine.describe()}), flush=True)


if __name__ == "__main__":
  app.run(main)
