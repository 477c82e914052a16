r"""Dataset examples and activation spectrum for channels of a layer.

  python experiments/dataset_examples.py --images=$ATLASJAX_DATA/imagenet-sample \
      --layer=mixed4a --channels=508,465 --out=/tmp/examples

For each channel writes examples_<layer>_<c>.png (the top-k receptive-field
crops around each image's maximum, then whole images), spectrum_<layer>_<c>.png
(images at --quantiles of the channel's max activation) and one JSON with the
top-k scores, positions and paths. With --render (the default) each
channel's optimized image (one batched feature-visualization render of all
channels, --render_size px, --render_steps steps) is shown beside its
examples. Memory stays bounded: one batch of
activations at a time plus one score per image and channel.
"""

import functools
import json
import os

from absl import flags
import jax
import numpy as np

import cli
from atlasjax import images as images_lib
from atlasjax import workdir as workdir_lib
from atlasjax.classic import examples
from atlasjax.optvis import objectives
from atlasjax.optvis import render as render_lib

_IMAGES = flags.DEFINE_string(
    "images", None, "Folder of photos (default: the sample photos).")
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_LAYER = flags.DEFINE_string("layer", None, "Spatial layer name (default: "
                             "the model's default layer, e.g. mixed4c).")
_CHANNELS = flags.DEFINE_list("channels", ["97"], "Channel indices.")
_K = flags.DEFINE_integer("k", examples.DEFAULT_K, "Examples per channel.")
_QUANTILES = flags.DEFINE_list(
    "quantiles", [str(q) for q in examples.DEFAULT_QUANTILES],
    "Spectrum quantiles in [0, 1].")
_CROP = flags.DEFINE_integer(
    "crop", None, "Crop side in pixels (default: the layer's effective "
    "receptive field, see --rf_mass).")
_RF_MASS = flags.DEFINE_float("rf_mass", examples.DEFAULT_RF_MASS,
                              "Gradient mass defining the receptive field.")
_LIMIT = flags.DEFINE_integer("limit", None, "Use only the first N images.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", examples.DEFAULT_BATCH_SIZE,
                                   "Images per forward pass.")
_SEED = flags.DEFINE_integer("seed", 0, "Key for the receptive-field probe.")
_RENDER = flags.DEFINE_boolean(
    "render", True, "Show each channel's optimized image beside its examples.")
_RENDER_SIZE = flags.DEFINE_integer("render_size", 128, "Optimized image side.")
_RENDER_STEPS = flags.DEFINE_integer("render_steps", 256, "Optimization steps.")


def _channel_objective(layer):
  return lambda c: objectives.channel(layer, c)


def render_channels(model, params, layer, channels, seed):
  """``[N, s, s, 3]`` numpy: one optimized image per channel, one render."""
  config = render_lib.RenderConfig(size=_RENDER_SIZE.value,
                                   steps=_RENDER_STEPS.value)
  result = render_lib.render(model, params, _channel_objective(layer),
                             args=np.asarray(channels, np.int32), config=config,
                             key=jax.random.PRNGKey(seed), item_ids=channels)
  return np.asarray(result.images)[..., :3]


def main(argv):
  del argv
  model, params = cli.load_model()
  layer = model.layer(cli.spatial_layer(model, _LAYER.value))
  try:
    channels = [int(c) for c in _CHANNELS.value]
  except ValueError:
    raise ValueError(f"--channels={','.join(_CHANNELS.value)}: give channel "
                     "indices, e.g. 508,465") from None
  bad = [c for c in channels if not 0 <= c < layer.depth]
  if bad:
    raise ValueError(f"--channels {bad} outside 0..{layer.depth - 1} of "
                     f"{layer.name}")
  paths = images_lib.list_images(cli.image_folder(_IMAGES.value))
  paths = paths[:_LIMIT.value] if _LIMIT.value else paths
  out_dir = cli.output_dir(_OUT.value)
  load = functools.partial(images_lib.load_for_model,
                           input_size=model.input_size)
  config = examples.ExamplesConfig(layer=layer.name, k=_K.value,
                                   batch_size=_BATCH_SIZE.value)
  found = examples.collect(model, params, paths, config,
                           examples.channel_directions(channels, layer.depth),
                           load=load)
  crop = _CROP.value or examples.receptive_field_size(
      model, params, layer.name, jax.random.PRNGKey(_SEED.value),
      mass=_RF_MASS.value)
  quantiles = [float(q) for q in _QUANTILES.value]
  summary = {"layer": layer.name, "stride": layer.stride, "crop": crop,
             "n_images": found.report.read, "skipped": found.report.skipped,
             "channels": {}}
  rendered = (render_channels(model, params, layer.name, channels, _SEED.value)
              if _RENDER.value else [None] * len(channels))
  for d, channel in enumerate(channels):
    ids = found.top.images[d]
    titles = [f"{found.top.scores[d, i]:.1f}" for i in range(len(ids))]
    tiles = (examples.example_tiles(found, d, ids, crop_size=crop, load=load)
             + examples.example_tiles(found, d, ids, load=load))
    name = f"{layer.name}_{channel}"
    examples.save_examples_sheet(
        tiles, os.path.join(out_dir, f"examples_{name}.png"),
        titles=titles + titles, beside=rendered[d],
        ncols=len(ids) + (rendered[d] is not None),
        suptitle=f"{name}: top-{len(ids)} crops ({crop}px) and images")
    spectrum = examples.spectrum_indices(found.scores[:, d], quantiles)
    examples.save_examples_sheet(
        examples.example_tiles(found, d, spectrum, load=load),
        os.path.join(out_dir, f"spectrum_{name}.png"),
        titles=[f"q={q:g}: {found.scores[i, d]:.1f}"
                for q, i in zip(quantiles, spectrum)],
        ncols=len(quantiles), suptitle=f"{name}: activation spectrum")
    summary["channels"][str(channel)] = {
        "top": [{"path": found.paths[i], "score": float(s),
                 "position": [int(v) for v in p]}
                for i, s, p in zip(ids, found.top.scores[d],
                                   found.top.positions[d]) if i >= 0],
        "spectrum": [{"quantile": q, "path": found.paths[i],
                      "score": float(found.scores[i, d])}
                     for q, i in zip(quantiles, spectrum)],
        "mean_score": float(np.nanmean(found.scores[:, d])),
    }
  workdir_lib.write_json(os.path.join(out_dir, f"examples_{layer.name}.json"),
                         summary, indent=2)
  print(json.dumps({k: summary[k] for k in
                    ("layer", "stride", "crop", "n_images", "skipped")}))


if __name__ == "__main__":
  cli.run(main)
