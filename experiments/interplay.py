r"""Neuron interplay (Olah et al., 2017): diversity, interpolation, sums.

  python experiments/interplay.py --layer=mixed4a --a=508 --b=465 --frames=5 \
      --diversity=4 --size=128 --steps=256 --out=/tmp/interplay

Three renders:

* diversity_<layer>_<a>.png: --diversity images of channel A optimised jointly
  with the diversity term (Gram-matrix dissimilarity) added, beside the same
  render with the term's weight 0 (same starting images);
* interpolate_<layer>_<a>_<b>.png: --frames frames from A to B with a shared +
  separate parameterization and the alignment term;
* sum_<layer>_<a>_<b>.png: A alone | B alone | A + B (one batch).

interplay.json holds the Gram similarities and the channel activations.
"""

import json

from absl import flags
import jax
import numpy as np

import cli
from atlasjax import plotting
from atlasjax.classic import synthesis
from atlasjax.optvis import render as render_lib

_LAYER = flags.DEFINE_string("layer", None, "Layer of both channels (default: "
                             "the model's default layer).")
_LAYER_B = flags.DEFINE_string("layer_b", None, "Layer of B (default: --layer).")
_A = flags.DEFINE_integer("a", 0, "Channel A (e.g. 508 of mixed4a: dog snouts).")
_B = flags.DEFINE_integer("b", 1, "Channel B (e.g. 465 of mixed4a: dog eyes).")
_FRAMES = flags.DEFINE_integer("frames", 5, "Interpolation frames (0: skip).")
_DIVERSITY = flags.DEFINE_integer("diversity", 4, "Diverse images of A (0: skip).")
_DIVERSITY_WEIGHT = flags.DEFINE_float("diversity_weight", synthesis.DIVERSITY_WEIGHT,
                                       "Weight of the diversity term.")
_DIVERSITY_LAYER = flags.DEFINE_string(
    "diversity_layer", None, "Layer of the diversity term (default: --layer).")
_ALIGNMENT_WEIGHT = flags.DEFINE_float("alignment_weight", synthesis.ALIGNMENT_WEIGHT,
                                       "Weight of the alignment term.")
_SIZE = flags.DEFINE_integer("size", 128, "Image side in pixels.")
_STEPS = flags.DEFINE_integer("steps", 256, "Optimisation steps.")
_LR = flags.DEFINE_float("lr", render_lib.DEFAULT_LR, "Adam learning rate.")
_TRANSFORMS = cli.define_transforms("standard")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)


def main(argv):
  del argv
  cli.check_pieces(transforms=_TRANSFORMS.value)
  model, params = cli.load_model()
  layer_a = cli.layer_or_default(model, _LAYER.value)
  layer_b = model.layer(_LAYER_B.value or layer_a).name
  if _DIVERSITY_LAYER.value:
    model.layer(_DIVERSITY_LAYER.value)
  for layer, c in ((layer_a, _A.value), (layer_b, _B.value)):
    if not 0 <= c < model.layer(layer).depth:
      raise ValueError(f"channel {c} outside 0..{model.layer(layer).depth - 1} "
                       f"of {layer}")
  a, b = _A.value, _B.value
  config = render_lib.RenderConfig(size=_SIZE.value, steps=_STEPS.value,
                                   lr=_LR.value, transforms=_TRANSFORMS.value)
  key = jax.random.PRNGKey(_SEED.value)
  out = cli.output_dir(_OUT.value)
  summary = {"layer_a": layer_a, "layer_b": layer_b, "a": a, "b": b}

  if _DIVERSITY.value > 1:
    div_layer = _DIVERSITY_LAYER.value or layer_a
    # Both weights in one batch: same item id, so the same starting images.
    result = synthesis.render_diversity(
        model, params, layer_a, [a, a], _DIVERSITY.value, config, key,
        weight=[_DIVERSITY_WEIGHT.value, 0.0], diversity_layer=div_layer)
    diverse, plain = np.asarray(result.images)[..., :3]
    plotting.save_png(
        plotting.grid(np.concatenate([diverse, plain]), ncols=_DIVERSITY.value,
                      pad=2),
        out / f"diversity_{layer_a}_{a}.png")
    summary["diversity"] = {
        "rows": ["with diversity", "weight 0"],
        "gram_similarity": synthesis.gram_similarity(model, params, diverse, div_layer),
        "gram_similarity_weight0": synthesis.gram_similarity(model, params, plain, div_layer),
        "channel_a_mean": synthesis.channel_means(model, params, diverse, layer_a, [a])[:, 0].tolist()}

  if _FRAMES.value > 1:
    result = synthesis.render_interpolation(
        model, params, layer_a, a, layer_b, b, _FRAMES.value, config, key,
        alignment_weight=_ALIGNMENT_WEIGHT.value)
    frames = np.asarray(result.images[0])[..., :3]
    plotting.save_png(plotting.grid(frames, ncols=len(frames), pad=2),
                      out / f"interpolate_{layer_a}_{a}_{b}.png")
    summary["interpolation"] = {
        "a": synthesis.channel_means(model, params, frames, layer_a, [a])[:, 0].tolist(),
        "b": synthesis.channel_means(model, params, frames, layer_b, [b])[:, 0].tolist()}

  result = synthesis.render_channel_sum(model, params, layer_a, a, layer_b, b,
                                        config, key)
  images = np.asarray(result.images)[..., :3]
  plotting.save_png(plotting.grid(images, ncols=len(images), pad=2),
                    out / f"sum_{layer_a}_{a}_{b}.png")
  summary["sum"] = {
      name: {"a": float(synthesis.channel_means(model, params, im[None], layer_a, [a])[0, 0]),
             "b": float(synthesis.channel_means(model, params, im[None], layer_b, [b])[0, 0])}
      for name, im in zip(synthesis.CHANNEL_SUM_NAMES, images)}
  (out / "interplay.json").write_text(json.dumps(summary, indent=1))
  print(json.dumps(summary, indent=1))


if __name__ == "__main__":
  cli.run(main)
