r"""Collection throughput against its two bounds, and 2 processes against 1.

  python bench/collect_bench.py [--n_images=64] [--crops_per_image=1] \
      [--workers=0,1,2] [--processes=1,2] [--layer=mixed4c]

One JSON line per measurement, all on the same photos (the first
``--n_images`` sample photos) and GoogLeNet at ``--layer`` with attributions:

* ``decode``: the grain loader alone (decode, crop, resize; nothing else),
  per worker count (0 = decoding threads of this process only): the input
  bound, ``steady_images_per_s`` after the first batch over
  ``--decode_passes`` passes, and ``startup_s`` to the first batch (worker
  processes start by importing the loader: seconds, once per run).
* ``model``: the jitted per-batch computation alone (forward, top-5, the JVP
  attribution) on one decoded batch, repeated after compiling: the compute
  bound.
* ``collect``: ``collect.run`` end to end into a fresh work directory, per
  worker count; ``steady_images_per_s`` counts from the first saved shard to
  the last (so compilation and the loader's start-up are excluded), and
  ``limiter`` names the lower bound and how close collection gets to it.
* ``processes``: the whole collection launched as 1 and as 2 processes on
  ``jax.distributed`` (loopback coordinator), wall time including start-up,
  plus the steady rate from each process's shard timestamps.

Every line carries the machine description and the 1-minute load average.
"""

import functools
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

import machine

_N = flags.DEFINE_integer("n_images", 64, "Photos to collect from.")
_CROPS = flags.DEFINE_integer("crops_per_image", 1, "Crops per photo.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Forward batch (crops).")
_SHARD = flags.DEFINE_integer("shard_images", 8, "Photos per shard.")
_WORKERS = flags.DEFINE_list("workers", ["0", "1", "2"], "grain worker counts.")
_THREADS = flags.DEFINE_integer("threads", 4, "Decoding threads per process.")
_PROCESSES = flags.DEFINE_list("processes", ["1", "2"], "Process counts.")
_LAYER = flags.DEFINE_string("layer", "mixed4c", "Layer to collect.")
_MODEL_REPS = flags.DEFINE_integer("model_reps", 4, "Timed batches (model).")
_DECODE_PASSES = flags.DEFINE_integer(
    "decode_passes", 4, "Passes over the photos when timing the loader alone, so "
    "its steady rate is measured well past the workers' start-up.")
_STAGES = flags.DEFINE_list("stages", ["decode", "model", "collect", "processes"],
                            "Which measurements to run.")
_DATA = flags.DEFINE_string("data", None, "Data root (default $ATLASJAX_DATA).")
# Internal: one process of the multi-process measurement.
_CHILD = flags.DEFINE_string("child", None, "Internal: WORKDIR of a child run.")
_PID = flags.DEFINE_integer("process_id", 0, "Internal.")
_COUNT = flags.DEFINE_integer("num_processes", 1, "Internal.")
_PORT = flags.DEFINE_integer("port", 0, "Internal.")
_IMAGES = flags.DEFINE_string("images", None, "Internal: image folder.")
_TIMEOUT_S = 1800


def _emit(**fields):
  print(json.dumps({**fields, "machine": machine.describe()}), flush=True)


def _config(workers: int):
  from atlasjax.atlas import collect  # pylint: disable=g-import-not-at-top
  return collect.CollectConfig(
      layers=(_LAYER.value,), crops_per_image=_CROPS.value,
      batch_size=_BATCH.value, shard_images=_SHARD.value,
      loader_threads=_THREADS.value, loader_workers=workers)


def _timed_collect(config, model, params, images, workdir) -> list[float]:
  """Runs collect.run; returns the time at which each shard was saved."""
  from atlasjax.atlas import collect  # pylint: disable=g-import-not-at-top
  stamps, save = [], collect._save_shard  # pylint: disable=protected-access

  def stamped(path, flat):
    save(path, flat)
    stamps.append(time.perf_counter())
  collect._save_shard = stamped  # pylint: disable=protected-access
  try:
    collect.run(config, model, params, images, workdir)
  finally:
    collect._save_shard = save  # pylint: disable=protected-access
  return stamps


def _steady(stamps, images_per_shard) -> float | None:
  if len(stamps) < 2:
    return None
  return (len(stamps) - 1) * images_per_shard / (stamps[-1] - stamps[0])


def _child() -> None:
  from atlasjax import distributed  # pylint: disable=g-import-not-at-top
  if _COUNT.value > 1:
    distributed.initialize(f"127.0.0.1:{_PORT.value}", _COUNT.value, _PID.value)
  from atlasjax import models  # pylint: disable=g-import-not-at-top
  model, params = models.load(data=_DATA.value)
  stamps = _timed_collect(_config(0), model, params, _IMAGES.value, _CHILD.value)
  pathlib.Path(_CHILD.value, f"stamps_{_PID.value}.json").write_text(
      json.dumps(stamps))


def _image_subset(folder: pathlib.Path) -> pathlib.Path:
  from atlasjax import data as data_lib  # pylint: disable=g-import-not-at-top
  from atlasjax import images as images_lib  # pylint: disable=g-import-not-at-top
  source = data_lib.sample_dir(_DATA.value)
  paths = images_lib.list_images(source)[:_N.value]
  folder.mkdir()
  for p in paths:
    (folder / os.path.basename(p)).symlink_to(p)
  return folder


def _measure_processes(images: pathlib.Path, tmp: pathlib.Path) -> None:
  for count in (int(v) for v in _PROCESSES.value):
    workdir = tmp / f"processes_{count}"
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    start = time.perf_counter()
    procs = [subprocess.Popen(
        [sys.executable, __file__, f"--child={workdir}", f"--process_id={i}",
         f"--num_processes={count}", f"--port={port}", f"--images={images}",
         f"--layer={_LAYER.value}", f"--crops_per_image={_CROPS.value}",
         f"--batch_size={_BATCH.value}", f"--shard_images={_SHARD.value}"]
        + ([f"--data={_DATA.value}"] if _DATA.value else []),
        stdout=subprocess.DEVNULL) for i in range(count)]
    codes = [p.wait(timeout=_TIMEOUT_S) for p in procs]
    wall = time.perf_counter() - start
    if any(codes):
      raise RuntimeError(f"{count}-process collection failed: exit codes {codes}")
    stamps = sorted(t for i in range(count) for t in json.loads(
        (workdir / f"stamps_{i}.json").read_text()))
    # Each process's first shard pays its start-up; count from the last of
    # those to the end.
    firsts = sorted(json.loads((workdir / f"stamps_{i}.json").read_text())[0]
                    for i in range(count))
    after = [t for t in stamps if t > firsts[-1]]
    steady = (len(after) * _SHARD.value / (stamps[-1] - firsts[-1])
              if after else None)
    _emit(workload="collect_processes", processes=count, images=_N.value,
          crops_per_image=_CROPS.value, layer=_LAYER.value,
          wall_s=round(wall, 2), images_per_s=round(_N.value / wall, 3),
          steady_images_per_s=steady and round(steady, 3),
          note="all processes share this machine's cores")


def main(argv):
  del argv
  if _CHILD.value:
    _child()
    return
  import jax  # pylint: disable=g-import-not-at-top
  from atlasjax import models  # pylint: disable=g-import-not-at-top
  from atlasjax.atlas import collect, loader  # pylint: disable=g-import-not-at-top
  from atlasjax import images as images_lib  # pylint: disable=g-import-not-at-top
  model, params = models.load(data=_DATA.value)
  with tempfile.TemporaryDirectory() as tmp_name:
    tmp = pathlib.Path(tmp_name)
    images = _image_subset(tmp / "images")
    paths = images_lib.list_images(images)
    per_batch = max(1, _BATCH.value // _CROPS.value)
    n_shards = -(-len(paths) // _SHARD.value)
    specs = loader.batch_specs(range(n_shards), _SHARD.value, len(paths), per_batch)
    box = functools.partial(collect.crop_box, 0)
    size = 224

    # Input bound: the loader alone.
    decode = {}
    for workers in (int(v) for v in _WORKERS.value):
      if "decode" not in _STAGES.value:
        break
      start = time.perf_counter()
      first, count = None, 0
      for batch in loader.iterate(specs * _DECODE_PASSES.value, paths, box,
                                  _CROPS.value, size, threads=_THREADS.value,
                                  workers=workers):
        count += len(batch["index"])
        first = first or (time.perf_counter(), count)
      end = time.perf_counter()
      steady = (count - first[1]) / (end - first[0])
      decode[workers] = steady
      _emit(workload="collect_decode", workers=workers, threads=_THREADS.value,
            images=count, crops_per_image=_CROPS.value,
            startup_s=round(first[0] - start, 2),
            steady_images_per_s=round(steady, 3))
    if _STAGES.value == ["decode"]:
      return

    # Compute bound: the jitted sample function on one decoded batch.
    sample_fn = collect.make_sample_fn(model, (_LAYER.value,), True)
    batch = next(loader.iterate(specs[:1], paths, box, _CROPS.value, size))
    crops = batch["crops"].astype(np.float32) / 255.0
    b, kc = crops.shape[:2]
    crops = crops.reshape(b * kc, size, size, 3)
    hw = jax.eval_shape(lambda p, x: model.apply(p, x, layers=(_LAYER.value,)),
                        params, jax.ShapeDtypeStruct((1, size, size, 3), np.float32)
                        )[_LAYER.value].shape[1:3]
    positions = np.stack([np.stack([collect.sample_positions(0, i, 0, 0, *hw)
                                    for i in range(b * kc)])])
    jax.block_until_ready(sample_fn(params, crops, positions))   # compile
    start = time.perf_counter()
    for _ in range(_MODEL_REPS.value):
      jax.block_until_ready(sample_fn(params, crops, positions))
    model_rate = b * _MODEL_REPS.value / (time.perf_counter() - start)
    _emit(workload="collect_model", layer=_LAYER.value, batch_crops=b * kc,
          crops_per_image=_CROPS.value, images_per_s=round(model_rate, 3))

    # Collection end to end.
    for workers in (int(v) for v in _WORKERS.value):
      if "collect" not in _STAGES.value:
        break
      workdir = tmp / f"collect_{workers}"
      start = time.perf_counter()
      stamps = _timed_collect(_config(workers), model, params, images, workdir)
      wall = time.perf_counter() - start
      steady = _steady(stamps, _SHARD.value)
      bounds = {"decode": decode.get(workers), "model": model_rate}
      limiter = min((k for k in bounds if bounds[k]), key=lambda k: bounds[k])
      _emit(workload="collect", workers=workers, threads=_THREADS.value,
            images=len(paths), crops_per_image=_CROPS.value, layer=_LAYER.value,
            wall_s=round(wall, 2), steady_images_per_s=steady and round(steady, 3),
            decode_bound=bounds["decode"] and round(bounds["decode"], 3),
            model_bound=round(model_rate, 3), limiter=limiter,
            of_limiting_bound=steady and round(steady / bounds[limiter], 3))

    if "processes" in _STAGES.value:
      _measure_processes(images, tmp)


if __name__ == "__main__":
  app.run(main)
