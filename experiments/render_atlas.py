r"""Stage 3: grid the layout, render every cell's icon, assemble the atlas.

  python experiments/render_atlas.py --workdir=DIR --grid_sizes=20,40,80 \
      --min_density=10,4,2 --steps=1024 --attempts=4

Flags as experiments/atlas.py. With ``--rerender``, a finished atlas is
rendered again with the icon settings given on the command line (the others
as recorded in its atlas.json), keeping its collection and layout; the atlas
images, fidelity figures, run record and viewer follow:

  python experiments/render_atlas.py --workdir=DIR --rerender \
      --objective=mylab.objectives:icon_factory --param=mylab.params:my_param
"""

import dataclasses

from absl import flags

import cli
import atlas_flags as af
from atlasjax.atlas import pipeline
from atlasjax.atlas import rebuild
from atlasjax.atlas import render_atlas
from atlasjax.atlas import run_config

_RERENDER = flags.DEFINE_boolean(
    "rerender", False, "Re-render the icons of the finished atlas in --workdir "
    "(of --layers if given, else every layer) with the icon flags given "
    "(objective, param, transforms, steps …); the collection and layout are "
    "kept.")


def main(argv):
  del argv
  process = af.init_distributed()
  model, params, labels = af.load_model()
  config = af.pipeline_config(model)
  workdir = cli.output_dir(af.workdir(model, config), "--workdir")
  if _RERENDER.value:
    layers = (config.collect.layers if af.FIELD_FLAGS["layers"].present
              else None)   # default: every layer of the work directory
    paths = rebuild.rerender(workdir, model, params, labels, layers=layers,
                             viewer=config.viewer, **af.given_atlas_settings())
    if process.is_main:
      print(f"Re-rendered: {', '.join(str(p) for p in paths)}")
    return
  jobs = [(dataclasses.replace(config.atlas, layer=layer),
           *pipeline.layer_paths(layer, main=i == 0))
          for i, layer in enumerate(config.collect.layers)]
  # Validate every layer's job before the run record is written: a refused
  # run leaves the work directory as it found it.
  for layer_config, layout_name, _ in jobs:
    render_atlas.plan(layer_config, model, workdir, layout_name, params)
  run_config.record(workdir, run_config.sections(config, model.name, ("atlas",)))
  for layer_config, layout_name, prefix in jobs:
    render_atlas.run(layer_config, model, params, workdir, labels,
                     layout_name=layout_name, prefix=prefix)
  if process.is_main:
    run_config.mark_built(workdir, ("atlas",))
  if config.viewer and process.is_main:
    pipeline.write_viewer(workdir)


if __name__ == "__main__":
  cli.run(main)
