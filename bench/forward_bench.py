r"""Forward-pass throughput of the BVLC GoogLeNet: JAX vs a plain PyTorch port.

  python bench/forward_bench.py                      # CPU: batch 1, 8, 32
  python bench/forward_bench.py --batch=8 --notorch
  python bench/forward_bench.py --batch=256 --notorch   # GPU (see below)

For each workload (a forward pass up to ``mixed4c`` and up to ``logits`` at
224 px) and batch size it prints one JSON line per framework:

  {"workload": "forward_to_logits", "framework": "jax", "batch": 8,
   "figure": 41.2, "unit": "images/s", ..., "machine": {...}}

``figure`` is images/s of the best round (``median`` is also given): the JAX and
PyTorch timings are interleaved round by round, so load from other processes
on a shared machine hits both alike, and the best round is the one least
disturbed by it. Compilation and warm-up are excluded. Before timing, the two
implementations are checked to give the same ``mixed4c`` and logits on real
photos (max |a - b| / max |b| <= 1e-4), so the comparison is like for like.

PyTorch is dev-only (``pip install torch==2.13.0``, never a dependency). On a
GPU, run with ``--notorch`` (the reference port here is for CPU) and a large
batch, e.g. ``--batch=256``; the lead records those figures separately.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from atlasjax import data as data_lib  # noqa: E402
from atlasjax import images as images_lib  # noqa: E402
from atlasjax import models  # noqa: E402
from atlasjax.models import weights  # noqa: E402
import machine as machine_lib  # noqa: E402  (bench/machine.py)

_BATCH = flags.DEFINE_list("batch", ["1", "8", "32"], "Batch sizes.")
_LAYERS = flags.DEFINE_list("layers", ["mixed4c", "logits"],
                            "Outputs to run the forward pass up to.")
_SIZE = flags.DEFINE_integer("size", 224, "Image side in pixels.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds.")
_MIN_TIME = flags.DEFINE_float("min_time", 0.4, "Seconds per framework per round.")
_TORCH = flags.DEFINE_bool("torch", True, "Also time the PyTorch reference port.")
_TORCH_CHANNELS_LAST = flags.DEFINE_bool(
    "torch_channels_last", False, "Also time PyTorch with channels_last tensors.")
_THREADS = flags.DEFINE_integer(
    "threads", 0, "CPU threads for both frameworks (0: all cores). 1 gives a "
    "single-core comparison that is robust to other load on a shared machine.")
_DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA).")
_CHECK_TOL = 1e-4


def machine(torch=None) -> dict:
  info = machine_lib.describe()
  info.update(threads=_THREADS.value or os.cpu_count(),
              xla_flags=os.environ.get("XLA_FLAGS", ""))
  if torch is not None:
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
  return info


def rel_error(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / np.abs(b).max())


def photos(data, n: int, size: int) -> np.ndarray:
  """``n`` real sample photos, eval-preprocessed (random if no sample)."""
  try:
    files = images_lib.list_images(data_lib.sample_dir(data))[:: 800 // max(n, 1)][:n]
    images = [images_lib.load_eval(f, resize=size * 256 // 224, crop=size)
              for f in files]
    if len(images) == n:
      return np.stack(images)
  except (data_lib.DataError, FileNotFoundError):
    pass
  return np.random.default_rng(0).uniform(size=(n, size, size, 3)).astype(np.float32)


def timed(run, min_time: float) -> tuple[float, float]:
  """Seconds per call of ``run`` (which blocks), over >= min_time and >= 2
  calls, and the CPU time this process got per second of that (cores used)."""
  calls, start, cpu = 0, time.perf_counter(), time.process_time()
  while True:
    run()
    calls += 1
    elapsed = time.perf_counter() - start
    if calls >= 2 and elapsed >= min_time:
      return elapsed / calls, (time.process_time() - cpu) / elapsed


def main(argv):
  del argv
  threads = _THREADS.value or os.cpu_count()
  if _THREADS.value:  # Must be set before the XLA CPU client starts.
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
        f"{'false' if threads == 1 else 'true'} "
        f"intra_op_parallelism_threads={threads}").strip()
  torch = None
  if _TORCH.value:
    import torch  # noqa: F811  (dev-only)
    from torch_googlenet import GoogLeNet
    torch.set_num_threads(threads)
  model, params = models.load(models.DEFAULT_MODEL, _DATA.value)
  size = _SIZE.value
  batches = [int(b) for b in _BATCH.value]

  jax_fns = {layer: jax.jit(
      lambda p, x, layer=layer: model.apply(p, x, layers=(layer,))[layer])
             for layer in _LAYERS.value}
  impls = {"jax": None}
  if torch is not None:
    raw = weights.load_raw(data_lib.googlenet_dir(_DATA.value))
    nets = {"torch": GoogLeNet(raw)}
    if _TORCH_CHANNELS_LAST.value:
      nets["torch_channels_last"] = GoogLeNet(
          raw, memory_format=torch.channels_last)
    impls.update(nets)

  # Same numbers first: the PyTorch port must agree with the JAX model.
  check = photos(_DATA.value, 4, size)
  if torch is not None:
    for name, net in nets.items():
      with torch.inference_mode():
        for layer in _LAYERS.value:
          mine = np.asarray(jax_fns[layer](params, check))
          theirs = net(torch.from_numpy(check),
                       stop=None if layer == "logits" else layer)
          if layer != "logits":
            theirs = theirs.permute(0, 2, 3, 1)
          err = rel_error(theirs.numpy(), mine)
          same_top1 = (layer != "logits" or
                       (theirs.numpy().argmax(1) == mine.argmax(1)).all())
          print(json.dumps({"check": f"{name} vs jax", "layer": layer,
                            "max_rel_error": float(f"{err:.3g}"),
                            "same_top1": bool(same_top1)}), flush=True)
          if err > _CHECK_TOL or not same_top1:
            raise SystemExit(f"{name} disagrees with jax at {layer}: {err:.3g}")

  for layer in _LAYERS.value:
    workload = f"forward_to_{layer}"
    for batch in batches:
      x_np = np.ascontiguousarray(
          np.resize(photos(_DATA.value, min(batch, 8), size),
                    (batch, size, size, 3)))
      x_jax = jax.device_put(x_np)
      runs = {}
      fn = jax_fns[layer]
      fn(params, x_jax).block_until_ready()  # compile + warm-up
      runs["jax"] = lambda fn=fn: fn(params, x_jax).block_until_ready()
      if torch is not None:
        x_t = torch.from_numpy(x_np)
        stop = None if layer == "logits" else layer
        for name, net in nets.items():
          def run(net=net):
            with torch.inference_mode():
              net(x_t, stop=stop)
          run()  # warm-up
          runs[name] = run
      seconds = {name: [] for name in runs}
      cores = {name: [] for name in runs}
      for _ in range(_ROUNDS.value):  # interleaved: A B A B ...
        for name, run in runs.items():
          sec, used = timed(run, _MIN_TIME.value)
          seconds[name].append(sec)
          cores[name].append(used)
      info = machine(torch)
      for name, secs in seconds.items():
        print(json.dumps({
            "workload": workload, "framework": name, "batch": batch,
            "size": size, "figure": round(batch / min(secs), 2),
            "median": round(batch / statistics.median(secs), 2),
            "unit": "images/s", "rounds": len(secs),
            "cores_used": round(statistics.median(cores[name]), 2),
            "machine": info}),
              flush=True)


if __name__ == "__main__":
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
  app.run(main)
