r"""Stage 3: grid the layout, render every cell's icon, assemble the atlas.

  python experiments/render_atlas.py --workdir=DIR --grid_sizes=20,40,80 \
      --min_density=10,4,2 --steps=1024 --attempts=4
"""

from absl import app

import atlas_flags as af
from atlasjax.atlas import pipeline
from atlasjax.atlas import render_atlas


def main(argv):
  del argv
  model, params, labels = af.load_model()
  for i, layer in enumerate(af.LAYERS.value):
    layout_name, prefix = pipeline.layer_paths(layer, main=i == 0)
    render_atlas.run(af.atlas_config(layer), model, params, af.WORKDIR.value,
                     labels, layout_name=layout_name, prefix=prefix)
  if af.VIEWER.value:
    pipeline.write_viewer(af.WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
