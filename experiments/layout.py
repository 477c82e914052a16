r"""Stage 2: UMAP layout of collected activations (+ whitening, scatter plot).

  python experiments/layout.py --workdir=DIR [--layers=mixed4c] [--pca_dims=50]
  python experiments/layout.py --workdir=DIR --fit_sample=100000   # 10⁶ vectors
"""

from absl import app

import atlas_flags as af
from atlasjax.atlas import layout
from atlasjax.atlas import pipeline


def main(argv):
  del argv
  for i, layer in enumerate(af.LAYERS.value):
    out_name, _ = pipeline.layer_paths(layer, main=i == 0)
    layout.run(af.layout_config(layer), af.WORKDIR.value, out_name=out_name)


if __name__ == "__main__":
  app.run(main)
