"""Time the documentation build: a clean build (as CI's, every tutorial
executed) and a rebuild with nothing changed (myst-nb's cache hit).

  python bench/docs_build.py [--runs=clean,cached]

Both builds run ``python -m sphinx -W -E -b html docs OUT`` with the output,
doctrees, myst-nb cache and JAX compilation cache in one temporary folder, so
the repository's docs/_build is untouched. Prints one JSON line per build:
wall seconds, CPU seconds of the build and its kernels, and the 1-minute load
average before and after (the machine may be shared).
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]
_RUNS = flags.DEFINE_list("runs", ["clean", "cached"],
                          "Builds to time, in order: clean (empty caches), "
                          "cached (a rebuild reusing the clean build's caches).")


def _children_cpu() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def build(root: pathlib.Path, run: str) -> dict:
  """One ``sphinx -W -E`` build with its caches under ``root``; a JSON record."""
  env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache")}
  command = [sys.executable, "-m", "sphinx", "-W", "-E", "-q", "-b", "html",
             "-d", str(root / "doctrees"),
             "-D", f"nb_execution_cache_path={root / 'jupyter_cache'}",
             str(REPO / "docs"), str(root / "html")]
  load_before = os.getloadavg()[0]
  cpu, start = _children_cpu(), time.perf_counter()
  proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True,
                        text=True, check=False)
  wall = time.perf_counter() - start
  if proc.returncode:
    raise SystemExit(f"error: the docs build failed:\n{proc.stderr[-4000:]}")
  return {"workload": f"docs_build_{run}", "wall_s": round(wall, 1),
          "cpu_s": round(_children_cpu() - cpu, 1),
          "load_avg_1m_before": round(load_before, 2),
          "machine": machine.describe()}


def main(argv):
  del argv
  with tempfile.TemporaryDirectory(prefix="atlasjax_docs_bench_") as tmp:
    for run in _RUNS.value:
      print(json.dumps(build(pathlib.Path(tmp), run)), flush=True)


if __name__ == "__main__":
  app.run(main)
