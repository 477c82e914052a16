"""Many processes on one machine: collection and icon rendering on jax.distributed.

Each job runs ``mp_worker.py`` (the toy model) as real OS processes joined by a
loopback coordinator, with two CPU devices per process and gloo collectives,
and is compared with the same job run as one process (also with two devices,
so every device runs the same batch shapes):

* 3 processes: the collected rows and the atlas (cells, icons) are identical;
* 2 processes, one killed with SIGKILL after its first shard: JAX's runtime
  stops a job that lost a process, so the job is rerun; finished shards
  (the other process's and the killed one's first) are not redone, and the
  final collection and atlas are identical, with every shard present once.

Every process has a timeout; a hung job fails the test instead of CI.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from atlasjax import distributed
from atlasjax.atlas import collect

TESTS = pathlib.Path(__file__).resolve().parents[1]
REPO = TESTS.parent
WORKER = pathlib.Path(__file__).with_name("mp_worker.py")
DEVICES_PER_PROCESS = 2
N_IMAGES = 12            # 6 shards of 2 images (mp_worker.CONFIG)
N_SHARDS = 6
JOB_TIMEOUT_S = 400      # generous: two shared cores under load
KEYS = ["image_index", "crop_index", "crop_box", "label", "vectors/conv1",
        "vectors/conv2", "positions/conv1", "positions/conv2",
        "attributions/conv1", "attributions/conv2", "top_logits", "top_classes"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env() -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [str(TESTS / "distributed"), str(TESTS), str(REPO), env.get("PYTHONPATH", "")])
  env["JAX_PLATFORMS"] = "cpu"
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                      f"device_count={DEVICES_PER_PROCESS}").strip()
  return env


def _launch(images, workdir, process_id=0, num_processes=1, port=0, *extra):
  return subprocess.Popen(
      [sys.executable, str(WORKER), f"--images={images}", f"--workdir={workdir}",
       f"--process_id={process_id}", f"--num_processes={num_processes}",
       f"--port={port}", "--render", *extra],
      env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(procs, deadline):
  outputs = []
  try:
    for proc in procs:
      out, _ = proc.communicate(timeout=max(1.0, deadline - time.time()))
      outputs.append(out)
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  for proc, out in zip(procs, outputs):
    assert proc.returncode == 0, out[-3000:]
  return outputs


def _run_job(images, workdir, n):
  port = _free_port()
  procs = [_launch(images, workdir, i, n, port) for i in range(n)]
  return _wait(procs, time.time() + JOB_TIMEOUT_S)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  folder = tmp_path_factory.mktemp("images")
  rng = np.random.default_rng(4)
  for i in range(N_IMAGES):
    pixels = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f"img_{i:03d}.png")
  return folder


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("one_process")
  _run_job(images, workdir, 1)
  return workdir


def _rows(workdir) -> dict:
  data = collect.Collection.open(workdir).load(KEYS)
  order = np.lexsort((data["crop_index"], data["image_index"]))
  return {k: v[order] for k, v in data.items()}


def _assert_same_job(workdir, reference):
  ours, theirs = _rows(workdir), _rows(reference)
  pairs = list(zip(ours["image_index"], ours["crop_index"]))
  assert len(pairs) == len(set(pairs)) == N_IMAGES * 2   # no duplicates, none lost
  for k in KEYS:
    np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
  a = json.loads((workdir / "atlas.json").read_text())["grids"][0]
  b = json.loads((reference / "atlas.json").read_text())["grids"][0]
  assert a["cells"] == b["cells"] and len(a["cells"]) >= 4
  assert a["fidelity"] == b["fidelity"]
  for cell in a["cells"]:   # bit-identical icons
    np.testing.assert_array_equal(np.asarray(Image.open(workdir / cell["icon"])),
                                  np.asarray(Image.open(reference / cell["icon"])),
                                  err_msg=cell["icon"])


def test_three_processes_match_one(images, reference, tmp_path):
  outputs = _run_job(images, tmp_path, 3)
  assert all("rendered" in out for out in outputs)
  manifest = json.loads((tmp_path / "collect" / "manifest.json").read_text())
  assert manifest["processes"]["count"] == 3
  assert manifest["processes"]["local_devices"] == DEVICES_PER_PROCESS
  assert manifest["processes"]["owned_shards"] == [[0, 2], [2, 4], [4, 6]]
  assert [s["name"] for s in manifest["shards"]] == [
      collect.shard_name(k) for k in range(N_SHARDS)]
  _assert_same_job(tmp_path, reference)


def _shard_file(workdir, k) -> pathlib.Path:
  return workdir / "collect" / (collect.shard_name(k) + collect.SHARD_SUFFIX)


def test_killed_process_resumes_its_slice_only(images, reference, tmp_path):
  deadline = time.time() + JOB_TIMEOUT_S
  slow = "--slow_s=1.5"   # pause after each shard, so the kill lands mid-slice
  port = _free_port()
  first = _launch(images, tmp_path, 0, 2, port, slow)
  victim = _launch(images, tmp_path, 1, 2, port, slow)
  try:
    # Process 1 owns shards 3–5; kill it once its first shard is on disk.
    while not _shard_file(tmp_path, 3).exists():
      assert victim.poll() is None, victim.communicate()[0][-3000:]
      assert time.time() < deadline, "process 1 wrote no shard in time"
      time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not _shard_file(tmp_path, 5).exists(), "killed too late to test resume"
    # Process 0 finishes its own slice, then waits for process 1 at a barrier.
    while not all(_shard_file(tmp_path, k).exists() for k in range(3)):
      assert first.poll() is None, first.communicate()[0][-3000:]
      assert time.time() < deadline, "process 0 did not finish its slice"
      time.sleep(0.05)
  finally:
    # JAX's runtime takes the whole job down when a process dies (a restarted
    # process may not rejoin it), as a scheduler would: stop process 0 too.
    for proc in (first, victim):
      proc.kill()
      proc.wait()
  kept = {k: _shard_file(tmp_path, k).stat().st_mtime_ns for k in range(4)}
  port = _free_port()
  outputs = _wait([_launch(images, tmp_path, i, 2, port) for i in range(2)],
                  deadline)
  assert all("rendered" in out for out in outputs)
  # Finished shards, process 0's and the killed process's first, were kept.
  assert {k: _shard_file(tmp_path, k).stat().st_mtime_ns for k in range(4)} == kept
  leftovers = [p.name for p in (tmp_path / "collect").iterdir()
               if p.name.startswith(collect.SHARD_PREFIX)
               and not collect._is_finalized(p)]
  assert not leftovers
  _assert_same_job(tmp_path, reference)


def test_owned_slices_partition_the_work():
  for n in (0, 1, 5, 6, 17):
    for count in (1, 2, 3, 4):
      slices = [distributed.owned(n, p, count) for p in range(count)]
      assert [i for s in slices for i in s] == list(range(n))
      assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_single_process_without_settings(monkeypatch):
  for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES,
              distributed.ENV_PROCESS_ID, "SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri"):
    monkeypatch.delenv(var, raising=False)
  layout = distributed.initialize()
  assert (layout.process_index, layout.process_count) == (0, 1) and layout.is_main
  distributed.barrier("no-op in a single process")
  with pytest.raises(distributed.DistributedError, match="outside 0…1"):
    distributed.initialize(num_processes=2, process_id=5, mode="on")
