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

from absl import app
from absl import flags

import atlas_flags as af
from atlasjax.atlas import variants

_CLASS = flags.DEFINE_string("class", None, "Class name, WordNet id or index.",
                             required=True)
_TOP_K = flags.DEFINE_integer("top_k", variants.DEFAULT_TOP_K, "Also keep the "
                              "samples with the top_k largest positive "
                              "attributions to the class.")
flags.FLAGS.set_default("grid_sizes", [str(variants.CLASS_GRID)])
flags.FLAGS.set_default("min_density", [str(variants.CLASS_MIN_DENSITY)])


def main(argv):
  del argv
  model, params, labels = af.load_model()
  class_index = labels.lookup(_CLASS.value)
  variants.ensure_collection(af.collect_config(), model, params,
                             af.images_folder(), af.WORKDIR.value, labels)
  config = variants.ClassAtlasConfig(
      atlas=af.atlas_config(af.LAYERS.value[0]), top_k=_TOP_K.value,
      umap=variants.umap_preset(af.N_NEIGHBORS.value, af.MIN_DIST.value,
                                af.METRIC.value))
  path = variants.class_atlas(config, model, params, af.WORKDIR.value,
                              class_index, labels)
  folder = path.parent
  print(f"Class atlas of {labels.short_name(class_index)!r}: "
        f"{folder / f'grid_{config.atlas.grid_sizes[-1]}' / 'atlas.png'}")
  print(f"  atlas.json: {path}")


if __name__ == "__main__":
  app.run(main)
