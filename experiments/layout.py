r"""Stage 2: UMAP layout of collected activations (+ whitening, scatter plot).

  python experiments/layout.py --workdir=DIR [--layers=mixed4c] [--pca_dims=50]
  python experiments/layout.py --workdir=DIR --fit_sample=100000   # 10⁶ vectors

Flags as experiments/atlas.py; --model must be the collection's (its metadata
picks each layer's UMAP preset).
"""

import dataclasses

import cli
import atlas_flags as af
from atlasjax.atlas import layout
from atlasjax.atlas import pipeline
from atlasjax.atlas import run_config


def main(argv):
  del argv
  model = cli.get_model()
  config = af.pipeline_config(model)
  workdir = cli.output_dir(af.workdir(model, config), "--workdir")
  jobs = [(dataclasses.replace(config.layout, layer=layer),
           pipeline.layer_paths(layer, main=i == 0)[0])
          for i, layer in enumerate(config.collect.layers)]
  # Validate every layer's job before the run record is written: a refused
  # run leaves the work directory as it found it.
  for layer_config, out_name in jobs:
    layout.plan(layer_config, workdir, out_name=out_name, model=model)
  run_config.record(workdir, run_config.sections(config, model.name, ("layout",)))
  for layer_config, out_name in jobs:
    layout.run(layer_config, workdir, out_name=out_name, model=model)
  run_config.mark_built(workdir, ("layout",))


if __name__ == "__main__":
  cli.run(main)
