r"""Stage 1: sample activation vectors from a folder of photos into shards.

  python experiments/collect.py --images=DIR --workdir=DIR --layers=mixed4c \
      --crops_per_image=4 [--export=all.npz]

Rerunning with the same flags resumes; different flags are refused.
"""

from absl import app
from absl import flags

import atlas_flags as af
from atlasjax.atlas import collect

_EXPORT = flags.DEFINE_string("export", None, "Also write everything collected "
                              "to this .npz, in canonical order.")


def main(argv):
  del argv
  model, params, labels = af.load_model()
  collect.run(af.collect_config(), model, params, af.images_folder(),
              af.WORKDIR.value, labels)
  if _EXPORT.value:
    collect.Collection.open(af.WORKDIR.value).export(_EXPORT.value)
    print(f"collect: exported to {_EXPORT.value}")


if __name__ == "__main__":
  app.run(main)
