r"""How concepts split or fuse between two layers sampled from the same crops.

  python experiments/compare_layers.py --workdir=workdir/layers_4c_5b \
      --layers=mixed4c,mixed5b

Default --layers: the model's default (atlas) layer and its last spatial
layer (``model.cam_layer``), e.g. mixed4c,mixed5b for GoogLeNet.

Builds (or reuses) the atlases of both layers with experiments/atlas.py's
flags, then, at the last --grid_sizes, writes
<workdir>/compare_layers_<a>_<b>/side_by_side.png and comparison.json: for
each cell of A's grid the distribution of its samples over B's cells (entropy,
number of B cells covering 80 %), and the reverse. Each layer is sampled at its
own random position of the same crop, so the pairing is per crop, not per
spatial position.
"""

import dataclasses

from absl import app

import cli
import atlas_flags as af
from atlasjax.atlas import layout
from atlasjax.atlas import pipeline
from atlasjax.atlas import render_atlas
from atlasjax.atlas import variants


def main(argv):
  del argv
  model, params, labels = af.load_model()
  defaults = {"layers": (model.default_layer, model.cam_layer)}
  config = af.pipeline_config(model, defaults)
  if len(config.collect.layers) != 2 or len(set(config.collect.layers)) != 2:
    raise app.UsageError("--layers takes exactly two different layers, e.g. "
                         f"{model.default_layer},{model.cam_layer}.")
  layer_a, layer_b = config.collect.layers
  workdir = cli.output_dir(af.workdir(model, config), "--workdir")
  # Every setting is checked before anything is collected or written.
  for layer in (layer_a, layer_b):
    layout.check_config(dataclasses.replace(config.layout, layer=layer))
    render_atlas.check_config(dataclasses.replace(config.atlas, layer=layer),
                              model, params)
  variants.check_collection(config.collect, model, params, af.images_folder(),
                            workdir)
  collection = variants.ensure_collection(
      config.collect, model, params, af.images_folder(), workdir, labels)
  if not {layer_a, layer_b} <= set(collection.layers):
    raise app.UsageError(
        f"{workdir} holds layers {', '.join(collection.layers)}; use a new "
        f"--workdir to collect {layer_a} and {layer_b} from the same crops.")
  # Build every collected layer's atlas on the collection as it is.
  config = dataclasses.replace(config,
                               collect=variants.collect_config_of(collection))
  pipeline.run(config, model, params, collection.settings["images_root"],
               workdir, labels)
  size = config.atlas.grid_sizes[-1]
  density = config.atlas.density_for(len(config.atlas.grid_sizes) - 1)
  result = variants.compare_layers(workdir, layer_a, layer_b, size, density)
  print(f"Layer comparison ready: {workdir}/{result['png']}")


if __name__ == "__main__":
  cli.run(main)
