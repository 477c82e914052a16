r"""The main job: an activation atlas of mixed4c from the sample photos.

  python experiments/atlas.py            # defaults: sample photos, mixed4c, CPU-sized
  python experiments/atlas.py --grid_sizes=20,40,80 --min_density=10,4,2 \
      --steps=1024 --attempts=4 --crops_per_image=16   # paper-sized, on a GPU

Runs collect → layout → render_atlas in --workdir, skipping finished stages,
so rerunning after an interruption resumes. Prints where the atlas is.
"""

import pathlib

from absl import app

import atlas_flags as af
from atlasjax.atlas import pipeline


def main(argv):
  del argv
  model, params, labels = af.load_model()
  path = pipeline.run(af.pipeline_config(), model, params, af.images_folder(),
                      af.WORKDIR.value, labels)
  workdir = pathlib.Path(af.WORKDIR.value).resolve()
  print(f"Atlas ready: {workdir / f'grid_{af.GRIDS.value[-1]}' / 'atlas.png'}")
  print(f"  atlas.json: {path.resolve()}")
  if (workdir / "index.html").exists():
    print(f"  viewer:     {workdir / 'index.html'}")


if __name__ == "__main__":
  app.run(main)
