r"""A class activation atlas: the activations attributed to one class.

  python experiments/class_atlas.py --class=wok --workdir=workdir/atlas_mixed4c
  python experiments/class_atlas.py --class=567 --top_k=512 --workdir=DIR

Keeps the samples whose attribution to the class wins (argmax over classes)
plus the --top_k with the largest positive attribution to it, lays them out
with UMAP 20 / 0.01 / cosine and renders an 8×8 grid (minimum density 4) of
icons as in the global atlas, into <workdir>/class_<index>/. Uses the work
directory's finished collection, or collects one first (same flags as
experiments/atlas.py).
"""

from absl import flags

import cli
import atlas_flags as af
from atlasjax.atlas import variants

_CLASS = flags.DEFINE_string("class", None, "Class name, WordNet id or index.",
                             required=True)
_TOP_K = flags.DEFINE_integer("top_k", variants.DEFAULT_TOP_K, "Also keep the "
                              "samples with the top_k largest positive "
                              "attributions to the class.")
# A class atlas has fewer samples than the global one: one coarser grid.
SCRIPT_DEFAULTS = {"grid_sizes": (variants.CLASS_GRID,),
                   "min_density": (variants.CLASS_MIN_DENSITY,)}


def main(argv):
  del argv
  model, params, labels = af.load_model()
  class_index = labels.lookup(_CLASS.value)
  config = af.pipeline_config(model, SCRIPT_DEFAULTS)
  workdir = cli.output_dir(af.workdir(model, config), "--workdir")
  class_config = variants.ClassAtlasConfig(
      atlas=config.atlas, top_k=_TOP_K.value,
      umap=variants.umap_preset(config.layout.n_neighbors,
                                config.layout.min_dist, config.layout.metric))
  af.prepare_variant(class_config, config, model, params, labels, workdir)
  path = variants.class_atlas(class_config, model, params, workdir,
                              class_index, labels)
  folder = path.parent
  print(f"Class atlas of {labels.short_name(class_index)!r}: "
        f"{folder / f'grid_{config.atlas.grid_sizes[-1]}' / 'atlas.png'}")
  print(f"  atlas.json: {path}")


if __name__ == "__main__":
  cli.run(main)
