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

from absl import flags

import cli
import atlas_flags as af
from atlasjax.atlas import variants

_LEFT = flags.DEFINE_string("left", None, "Class shown on the left.", required=True)
_RIGHT = flags.DEFINE_string("right", None, "Class shown on the right.",
                             required=True)
_TOP_K = flags.DEFINE_integer("top_k", variants.DEFAULT_TOP_K, "Also keep the "
                              "top_k samples by positive attribution to each class.")
SCRIPT_DEFAULTS = {"grid_sizes": (variants.COMPARE_GRID,),
                   "min_density": (variants.COMPARE_MIN_DENSITY,)}


def main(argv):
  del argv
  model, params, labels = af.load_model()
  left, right = labels.lookup(_LEFT.value), labels.lookup(_RIGHT.value)
  config = af.pipeline_config(model, SCRIPT_DEFAULTS)
  compare_config = variants.CompareClassesConfig(
      atlas=config.atlas, top_k=_TOP_K.value,
      umap=variants.umap_preset(config.layout.n_neighbors,
                                config.layout.min_dist, config.layout.metric))
  workdir = cli.output_dir(af.workdir(model, config), "--workdir")
  af.prepare_variant(compare_config, config, model, params, labels, workdir)
  result = variants.compare_classes(compare_config, model, params, workdir,
                                    left, right, labels)
  print(f"Comparison ready: {workdir}/{result['png']} "
        f"({len(result['cells'])} cells, {result['samples']} samples)")


if __name__ == "__main__":
  cli.run(main)
