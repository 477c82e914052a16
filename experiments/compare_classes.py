r"""A two-class comparison atlas, e.g. wok vs frying pan.

  python experiments/compare_classes.py --left=wok --right="frying pan" \
      --workdir=workdir/atlas_mixed4c

Takes the samples attributed to either class; x is the attribution difference
(right − left) over its 99th percentile of |·|, clipped to [−1, 1] (the right
class's evidence on the right), y a 1-D UMAP of the activations; a 10×10 grid
of icons. Writes <workdir>/compare_<left>_<right>/comparison.png (both sides,
labelled) and comparison.json (per cell: count, mean attribution difference,
top classes).
"""

from absl import app
from absl import flags

import atlas_flags as af
from atlasjax.atlas import variants

_LEFT = flags.DEFINE_string("left", None, "Class shown on the left.", required=True)
_RIGHT = flags.DEFINE_string("right", None, "Class shown on the right.",
                             required=True)
_TOP_K = flags.DEFINE_integer("top_k", variants.DEFAULT_TOP_K, "Also keep the "
                              "top_k samples by positive attribution to each class.")
flags.FLAGS.set_default("grid_sizes", [str(variants.COMPARE_GRID)])
flags.FLAGS.set_default("min_density", [str(variants.COMPARE_MIN_DENSITY)])


def main(argv):
  del argv
  model, params, labels = af.load_model()
  left, right = labels.lookup(_LEFT.value), labels.lookup(_RIGHT.value)
  variants.ensure_collection(af.collect_config(), model, params,
                             af.images_folder(), af.WORKDIR.value, labels)
  config = variants.CompareClassesConfig(
      atlas=af.atlas_config(af.LAYERS.value[0]), top_k=_TOP_K.value,
      umap=variants.umap_preset(af.N_NEIGHBORS.value, af.MIN_DIST.value,
                                af.METRIC.value))
  result = variants.compare_classes(config, model, params, af.WORKDIR.value,
                                    left, right, labels)
  print(f"Comparison ready: {af.WORKDIR.value}/{result['png']} "
        f"({len(result['cells'])} cells, {result['samples']} samples)")


if __name__ == "__main__":
  app.run(main)
