r"""Circuit view of one unit: its strongest inputs and the weights between.

  python experiments/circuit.py --unit=mixed4b:389 --k=8 --out=/tmp/circuit

Computes the expanded weights from the previous unit layer (``--from``; by
default :func:`atlasjax.circuits.previous_layer`, e.g. mixed4a for mixed4b)
to the unit, ranks the input units by the L2 norm of the positive and of the
negative part of their kernel, and renders the unit and its k strongest
positive and k strongest negative inputs in ONE batched render: one objective
family over ``(layer index, channel)`` (:func:`circuits.layer_channel_family`),
so units of both layers share one compiled program (every item runs the
network to the deeper layer; only its own channel enters its objective).

Writes circuit_<layer>_<c>.png (the unit on top; below it the positive, then
the negative inputs, each over its kernel drawn red = positive, blue =
negative on one shared scale) and circuit_<layer>_<c>.json (units, norms,
kernels, objective values, settings).

The default unit, mixed4b:389 (dog faces on these weights), was picked on the
BVLC weights by looking at renders, not taken from a paper: unit numbers in
the Circuits thread refer to Lucid's InceptionV1, a different training.
"""

import json
import os
import time

from absl import flags
import jax
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

import cli
from atlasjax import circuits
from atlasjax import workdir as workdir_lib
from atlasjax.optvis import render as render_lib

DEFAULT_UNIT = "mixed4b:389"

_UNIT = flags.DEFINE_string("unit", DEFAULT_UNIT, "LAYER:CHANNEL of the unit.")
_FROM = flags.DEFINE_string("from", None,
                            "Input layer (default: the previous unit layer).")
_K = flags.DEFINE_integer("k", 8, "Strongest positive and negative inputs shown.")
_SIZE = flags.DEFINE_integer("size", 128, "Render side in pixels.")
_STEPS = flags.DEFINE_integer("steps", 256, "Optimisation steps.")
_SEED = flags.DEFINE_integer("seed", 0, "Render PRNG seed.")
_OUT = flags.DEFINE_string("out", "workdir/circuit", "Output folder.")


def circuit(model, params, layer_b, unit, layer_a, k):
  """Kernels and rankings of ``unit``'s inputs from ``layer_a``."""
  weights = circuits.expanded_weights(model, params, layer_a, layer_b,
                                      channels_b=[unit])
  ranked = circuits.strongest_inputs(weights, 0, k)
  return weights[0], ranked


def draw(path, title, target, rows, kernels_scale):
  """The figure: target on top, then (render, kernel) pairs per sign."""
  k = max(len(r[1]) for r in rows) or 1
  fig = plt.figure(figsize=(1.6 * max(k, 3), 2.0 + 3.4 * len(rows)))
  grid = fig.add_gridspec(1 + 2 * len(rows), k, height_ratios=[1.4] + [1, 0.7] * len(rows))
  ax = fig.add_subplot(grid[0, k // 2 - 1:k // 2 + 1] if k > 1 else grid[0, 0])
  ax.imshow(target[1])
  ax.set_title(target[0], fontsize=10)
  ax.axis("off")
  for r, (label, items) in enumerate(rows):
    for i, (name, image, kernel, norm) in enumerate(items):
      ax = fig.add_subplot(grid[1 + 2 * r, i])
      ax.imshow(image)
      ax.set_title(f"{name}\n{label[0]}‖w‖={norm:.2f}", fontsize=7)
      ax.axis("off")
      if i == 0:
        ax.text(-0.12, 0.5, label, transform=ax.transAxes, rotation=90,
                va="center", ha="right", fontsize=9)
      ax = fig.add_subplot(grid[2 + 2 * r, i])
      ax.imshow(kernel, cmap="bwr", vmin=-kernels_scale, vmax=kernels_scale,
                interpolation="nearest")
      ax.axis("off")
  fig.suptitle(title, fontsize=11)
  # Atomic: a killed run leaves the old figure or the new one, never half.
  workdir_lib.write_with(path, lambda f: fig.savefig(f, format="png", dpi=110,
                                                     bbox_inches="tight"))
  plt.close(fig)


def main(argv):
  del argv
  model, params = cli.load_model()
  out_dir = cli.output_dir(_OUT.value)
  cli.check_size(model, _SIZE.value, "--size")
  layer_b, unit = circuits.parse_unit(_UNIT.value)
  depth = model.layer(layer_b).depth
  if not 0 <= unit < depth:
    raise ValueError(f"--unit={_UNIT.value}: {layer_b} has channels 0..{depth - 1}")
  layer_a = _FROM.value or circuits.previous_layer(model, layer_b)
  if layer_a is None:
    raise ValueError(f"{layer_b!r} has no previous unit layer; pass --from=LAYER")
  t0 = time.perf_counter()
  kernels, ranked = circuit(model, params, layer_b, unit, layer_a, _K.value)
  t_weights = time.perf_counter() - t0
  inputs = list(dict.fromkeys(
      c for sign in ("positive", "negative") for c, _ in ranked[sign]))
  units = [(layer_b, unit)] + [(layer_a, c) for c in inputs]
  layers = (layer_a, layer_b)
  args = circuits.unit_args(model, layers, units)

  config = render_lib.RenderConfig(size=_SIZE.value, steps=_STEPS.value)
  t0 = time.perf_counter()
  # One render call for the unit and all its inputs (two layers, one family).
  result = render_lib.render(
      model, params, circuits.layer_channel_family(layers), args=args,
      config=config, key=jax.random.PRNGKey(_SEED.value),
      item_ids=args[:, 0] * 100_000 + args[:, 1])
  images = np.asarray(result.images)[..., :3]
  values = np.asarray(result.values)
  t_render = time.perf_counter() - t0
  image_of = {u: images[i] for i, u in enumerate(units)}
  value_of = {u: float(values[i]) for i, u in enumerate(units)}

  scale = float(np.abs(kernels[..., inputs]).max()) if inputs else 1.0
  rows = []
  record = {"unit": f"{layer_b}:{unit}", "from": layer_a,
            "kernel_shape": list(kernels.shape[:2]),
            "value": value_of[(layer_b, unit)],
            "render": {"size": _SIZE.value, "steps": _STEPS.value,
                       "seed": _SEED.value, "batch": len(units),
                       "seconds": round(t_render, 1)},
            "weights_seconds": round(t_weights, 1),
            "ranking": "L2 norm of the positive (negative) part of the "
                       "expanded-weight kernel"}
  for sign, label in (("positive", "+ excites"), ("negative", "− inhibits")):
    items, rec = [], []
    for c, norm in ranked[sign]:
      kernel = kernels[:, :, c]
      items.append((f"{layer_a}:{c}", image_of[(layer_a, c)], kernel, norm))
      rec.append({"unit": f"{layer_a}:{c}", "norm": round(norm, 5),
                  "value": value_of[(layer_a, c)],
                  "kernel": np.round(kernel, 5).tolist()})
    rows.append((label, items))
    record[sign] = rec
  stem = os.path.join(out_dir, f"circuit_{layer_b}_{unit}")
  draw(stem + ".png",
       f"{layer_b}:{unit} and its strongest inputs in {layer_a} "
       f"(expanded weights, {kernels.shape[0]}×{kernels.shape[1]})",
       (f"{layer_b}:{unit}", image_of[(layer_b, unit)]), rows, scale)
  record["figure"] = os.path.basename(stem + ".png")
  workdir_lib.write_json(stem + ".json", record)
  print(json.dumps({"figure": stem + ".png", "json": stem + ".json",
                    "renders": len(units), "render_seconds": round(t_render, 1),
                    "weights_seconds": round(t_weights, 1)}))


if __name__ == "__main__":
  cli.run(main)
