r"""The main job: an activation atlas from a folder of photos.

  python experiments/atlas.py                       # sample photos, the model's
                                                    # default layer, CPU-sized
  python experiments/atlas.py --model=efficientnet_lite0
  python experiments/atlas.py --config=paper --images=/data/imagenet/train
  python experiments/atlas.py --steps=1024 --grid_sizes=20,40   # one field each

Runs collect → layout → render_atlas in --workdir, skipping finished stages,
so rerunning after an interruption resumes. Settings: the preset named by
--config (configs/atlas.py), overridden by the flags given; the resolved
configuration is written to <workdir>/run_config.json, and a work directory
built with different settings is refused (the error names the keys). Prints
where the atlas is.
"""

import cli
import atlas_flags as af
from atlasjax.atlas import pipeline


def main(argv):
  del argv
  process = af.init_distributed()
  model, params, labels = af.load_model()
  config = af.pipeline_config(model)
  workdir = cli.output_dir(af.workdir(model, config), "--workdir")
  path = pipeline.run(config, model, params, af.images_folder(), workdir, labels)
  if not process.is_main:
    return
  workdir = workdir.resolve()
  print(f"Atlas ready: {workdir / f'grid_{config.atlas.grid_sizes[-1]}' / 'atlas.png'}")
  print(f"  atlas.json: {path.resolve()}")
  if (workdir / "index.html").exists():
    print(f"  viewer:     {workdir / 'index.html'}")


if __name__ == "__main__":
  cli.run(main)
