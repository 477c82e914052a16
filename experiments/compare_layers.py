r"""How concepts split or fuse between two layers sampled from the same crops.

  python experiments/compare_layers.py --workdir=workdir/layers_4c_5b \
      --layers=mixed4c,mixed5b

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
from absl import flags

import atlas_flags as af
from atlasjax.atlas import pipeline
from atlasjax.atlas import variants

flags.FLAGS.set_default("layers", ["mixed4c", "mixed5b"])


def main(argv):
  del argv
  if len(af.LAYERS.value) != 2:
    raise app.UsageError("--layers takes exactly two layers, e.g. mixed4c,mixed5b.")
  layer_a, layer_b = af.LAYERS.value
  model, params, labels = af.load_model()
  collection = variants.ensure_collection(
      af.collect_config(), model, params, af.images_folder(), af.WORKDIR.value,
      labels)
  # Build every collected layer's atlas on the collection as it is.
  config = dataclasses.replace(af.pipeline_config(),
                               collect=variants.collect_config_of(collection))
  if not {layer_a, layer_b} <= set(collection.layers):
    raise app.UsageError(
        f"{af.WORKDIR.value} holds layers {', '.join(collection.layers)}; use a "
        f"new --workdir to collect {layer_a} and {layer_b} from the same crops.")
  pipeline.run(config, model, params, collection.settings["images_root"],
               af.WORKDIR.value, labels)
  size = int(af.GRIDS.value[-1])
  density = af.atlas_config(layer_a).density_for(len(af.GRIDS.value) - 1)
  result = variants.compare_layers(af.WORKDIR.value, layer_a, layer_b, size,
                                   density)
  print(f"Layer comparison ready: {af.WORKDIR.value}/{result['png']}")


if __name__ == "__main__":
  app.run(main)
