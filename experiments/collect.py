r"""Stage 1: sample activation vectors from a folder of photos into shards.

  python experiments/collect.py --images=DIR --workdir=DIR --layers=mixed4c \
      --crops_per_image=4 [--export=all.npz]

Rerunning with the same flags resumes; different settings are refused (the
error names them). Flags as experiments/atlas.py.
"""

from absl import flags

import cli
import atlas_flags as af
from atlasjax.atlas import collect
from atlasjax.atlas import run_config

_EXPORT = flags.DEFINE_string("export", None, "Also write everything collected "
                              "to this .npz, in canonical order.")


def main(argv):
  del argv
  process = af.init_distributed()
  model, params, labels = af.load_model()
  config = af.pipeline_config(model)
  workdir = cli.output_dir(af.workdir(model, config), "--workdir")
  # Validate everything (bad flags, photos, a conflicting work directory)
  # before the run record is written: a refused run leaves no trace.
  collect.plan(config.collect, model, params, af.images_folder(), workdir)
  run_config.record(workdir, run_config.sections(config, model.name,
                                                 ("collect",)))
  collect.run(config.collect, model, params, af.images_folder(), workdir, labels)
  if process.is_main:
    run_config.mark_built(workdir, ("collect",))
  if _EXPORT.value and process.is_main:
    collect.Collection.open(workdir).export(_EXPORT.value)
    print(f"collect: exported to {_EXPORT.value}")


if __name__ == "__main__":
  cli.run(main)
