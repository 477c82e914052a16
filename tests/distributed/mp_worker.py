"""One process of a small multi-process atlas job (the toy model), for the tests.

  python mp_worker.py --images=DIR --workdir=DIR [--process_id=I --num_processes=N
      --port=P] [--render] [--slow_s=1]

Collects with :data:`CONFIG`, then (``--render``) lays the vectors out with a
fixed linear projection (a stand-in for UMAP, which is single-process anyway
and slow to compile) and renders a 3×3 atlas with :data:`ATLAS`.
"""

import argparse
import pathlib
import sys
import time

import numpy as np

from atlasjax import distributed

CONFIG = dict(layers=("conv1", "conv2"), crops_per_image=2, image_size=32,
              batch_size=4, shard_images=2)
ATLAS = dict(layer="conv2", grid_sizes=(3,), min_density=(0,), icon_size=24,
             steps=3, attempts=1, chunk_size=2, seed=3)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--images", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--process_id", type=int, default=0)
  parser.add_argument("--num_processes", type=int, default=1)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument("--render", action="store_true")
  parser.add_argument("--slow_s", type=float, default=0.0)
  parser.add_argument("--loader_workers", type=int, default=0)
  args = parser.parse_args()
  if args.num_processes > 1:
    distributed.initialize(f"127.0.0.1:{args.port}", args.num_processes,
                           args.process_id)
  import toy_model  # pylint: disable=g-import-not-at-top
  from atlasjax.atlas import collect, layout, render_atlas  # pylint: disable=g-import-not-at-top
  if args.slow_s:   # A pause after each shard, so that a kill lands between two.
    save = collect._save_shard  # pylint: disable=protected-access
    def slow_save(path, flat):
      save(path, flat)
      time.sleep(args.slow_s)
    collect._save_shard = slow_save  # pylint: disable=protected-access
  model, params = toy_model.TOY_MODEL, toy_model.toy_params()
  config = collect.CollectConfig(**CONFIG, loader_workers=args.loader_workers)
  collect.run(config, model, params, args.images, args.workdir)
  print(f"process {args.process_id}: collected", flush=True)
  if not args.render:
    return
  workdir = pathlib.Path(args.workdir)
  layout_dir = workdir / layout.LAYOUT_DIR
  if distributed.layout().is_main:
    vectors = np.asarray(collect.Collection.open(workdir).vectors_memmap("conv2"))
    xy = vectors @ np.random.default_rng(0).standard_normal((vectors.shape[1], 2))
    xy = (xy - xy.min(0)) / (xy.max(0) - xy.min(0) + 1e-9) * 0.999
    layout_dir.mkdir(exist_ok=True)
    np.save(layout_dir / "coords.npy", xy.astype(np.float32))
  distributed.barrier("test-layout")
  render_atlas.run(render_atlas.AtlasConfig(**ATLAS), model, params, workdir)
  print(f"process {args.process_id}: rendered", flush=True)


if __name__ == "__main__":
  sys.exit(main())
