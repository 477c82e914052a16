r"""From a new idea to its first saved image: atlasjax beside Lucent 0.1.8.

  nice -n 5 python bench/first_image.py --lucent_python=/path/to/torch-venv/bin/python
  python bench/first_image.py --parts=compiles          # compile counts only

Two parts, one JSON line per measurement (workload, figures, machine, load):

* ``first_image``: each tool in a **fresh process**, timed from the spawn to
  its first saved PNG of a new one-channel objective (mixed4a:97) at the
  tool's own defaults — atlasjax: ``render.render(model, params, make)`` with
  ``RenderConfig()`` (128 px, 512 steps, FFT, standard transforms), a custom
  :class:`~atlasjax.optvis.objectives.Objective` written for the script, the
  BVLC weights, ``display.save``; Lucent: ``render_vis(model, "mixed4a:97")``
  (``bench/lucent_first_image.py``; random weights, see there). Each tool
  runs the same script twice, A/B interleaved (atlasjax, Lucent, atlasjax,
  Lucent): the first atlasjax run starts from an empty persistent compilation
  cache (a fresh folder), the second reuses it, as a researcher's second run
  of the same script would.
* ``compiles``: the five tasks of issue 27 in one fresh process at small
  sizes (what is counted is programs, not pixels): four mixed4a channels;
  push-pull (raise mixed4a:508, lower mixed4b:304) and a caricature of a
  photo; eight mixed4c directions in one call; an NNX CNN and a linen ViT;
  a custom objective for atlas icons — then a retyped identical objective
  and a per-item ``cossim_pow``, which must add no compile. Counted with
  ``render.cache_info()``; the persistent cache is off here so that every
  compile is a real one.
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
LUCENT_SCRIPT = pathlib.Path(__file__).resolve().parent / "lucent_first_image.py"
CHANNEL = ("mixed4a", 97)
CHILD_TIMEOUT_S = 1800
# The compile counts' render size and steps (what compiles does not depend on
# the steps; small sizes keep the part short).
TASK_SIZE, TASK_STEPS = 64, 8

_PARTS = flags.DEFINE_list("parts", ["first_image", "compiles"],
                           "first_image, compiles.")
_LUCENT_PYTHON = flags.DEFINE_string(
    "lucent_python", "", "A Python with torch and torch-lucent 0.1.8 (empty: "
    "atlasjax only).")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Interleaved A/B rounds.")
_RUNS = flags.DEFINE_list("runs", ["first", "second"],
                          "Runs per round: first (empty persistent cache), second.")
_STEPS = flags.DEFINE_integer("steps", 0, "Steps (0: each tool's default, 512).")
_CHILD = flags.DEFINE_enum("child", "", ["", "atlasjax", "compiles"],
                           "Internal: what a child process runs.")
_OUT = flags.DEFINE_string("out", "", "Internal: the child's PNG.")
_SPAWNED_AT = flags.DEFINE_float("spawned_at", 0.0, "Internal: parent's clock.")


# ----------------------------------------------------------------------------
# Children (fresh processes).

def child_atlasjax() -> dict:
  """One fresh-process first image; the stages as seen from inside."""
  start = _SPAWNED_AT.value
  from atlasjax import display, models  # pylint: disable=g-import-not-at-top
  from atlasjax.optvis import objectives, render  # pylint: disable=g-import-not-at-top
  imported = time.time()
  model, params = models.load()
  loaded = time.time()
  layer, index = CHANNEL
  # A new idea, written for this script: no built-in objective is reused.
  idea = objectives.Objective(lambda acts: acts[layer][..., index].mean(),
                              layers=(layer,), name=f"{layer}:{index}")
  config = render.RenderConfig(**({"steps": _STEPS.value} if _STEPS.value else {}))
  result = render.render(model, params, lambda: idea, config=config)
  display.save(result, _OUT.value)
  saved = time.time()
  return {"tool": "atlasjax", "seconds_to_image": round(saved - start, 2),
          "stages": {"start_and_import": round(imported - start, 2),
                     "model": round(loaded - imported, 2),
                     "render_and_save": round(saved - loaded, 2)},
          "cache": _cache_summary(render)}


def child_compiles() -> None:
  """The five tasks on GoogLeNet at a small size; one JSON line per step."""
  import research_tasks  # pylint: disable=g-import-not-at-top
  from atlasjax import models  # pylint: disable=g-import-not-at-top
  from atlasjax.optvis import render  # pylint: disable=g-import-not-at-top
  model, params = models.load()
  config = render.RenderConfig(size=TASK_SIZE, steps=TASK_STEPS)
  for record in research_tasks.run(model, params, research_tasks.GOOGLENET, config):
    print(json.dumps({"workload": "research_task_compiles", **record,
                      "size": TASK_SIZE, "steps": TASK_STEPS,
                      "load_avg_1m": round(os.getloadavg()[0], 2),
                      "machine": machine.describe()}), flush=True)


def _cache_summary(render) -> dict:
  info = render.cache_info()
  return {"hits": info.hits, "misses": info.misses,
          "compile_s": [round(c.seconds, 2) for c in info.compiles],
          "from_disk": [c.from_disk for c in info.compiles]}


def _children_cpu() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _spawn(command: list[str], env: dict) -> dict:
  """Runs a child that prints one JSON line; adds the parent's wall time and
  the child's CPU seconds (all threads: on a shared machine the wall time
  grows with the load, the CPU time much less)."""
  cpu = _children_cpu()
  spawned = time.time()
  proc = subprocess.run(command + [f"--spawned_at={spawned}"], env=env,
                        cwd=REPO, capture_output=True, text=True,
                        timeout=CHILD_TIMEOUT_S, check=False)
  if proc.returncode:
    raise SystemExit(f"error: {command[1]} failed:\n{proc.stderr[-3000:]}")
  record = json.loads(proc.stdout.strip().splitlines()[-1])
  record["process_wall_s"] = round(time.time() - spawned, 2)
  record["process_cpu_s"] = round(_children_cpu() - cpu, 2)
  return record


def _atlasjax_run(out: pathlib.Path, cache: pathlib.Path) -> dict:
  env = {**os.environ, "ATLASJAX_COMPILATION_CACHE": str(cache),
         "PYTHONPATH": str(REPO)}
  return _spawn([sys.executable, __file__, "--child=atlasjax", f"--out={out}",
                 f"--steps={_STEPS.value}"], env)


def _lucent_run(out: pathlib.Path) -> dict:
  steps = [f"--steps={_STEPS.value}"] if _STEPS.value else []
  return _spawn([_LUCENT_PYTHON.value, str(LUCENT_SCRIPT), f"--out={out}"] + steps,
                dict(os.environ))


def first_image(root: pathlib.Path) -> None:
  """Interleaved rounds: atlasjax (cold cache), Lucent, atlasjax (warm), Lucent."""
  for r in range(_ROUNDS.value):
    cache = root / f"jax_cache_{r}"         # empty: a first run on this machine
    for run in _RUNS.value:
      tools = [("atlasjax", lambda o: _atlasjax_run(o, cache))]
      if _LUCENT_PYTHON.value:
        tools.append(("lucent", _lucent_run))
      for tool, go in tools:
        out = root / f"{tool}_{r}_{run}.png"
        load = os.getloadavg()[0]
        record = go(out)
        if not out.exists():
          raise SystemExit(f"error: {tool} saved no image at {out}")
        print(json.dumps({"workload": "first_image", "run": run, "round": r,
                          **record, "steps": _STEPS.value or 512,
                          "load_avg_1m_before": round(load, 2),
                          "load_avg_1m_after": round(os.getloadavg()[0], 2),
                          "machine": machine.describe()}), flush=True)


def main(argv):
  del argv
  if _CHILD.value == "atlasjax":
    print(json.dumps(child_atlasjax()))
    return
  if _CHILD.value == "compiles":
    child_compiles()
    return
  with tempfile.TemporaryDirectory(prefix="first_image_") as tmp:
    root = pathlib.Path(tmp)
    if "first_image" in _PARTS.value:
      first_image(root)
    if "compiles" in _PARTS.value:
      env = {**os.environ, "ATLASJAX_COMPILATION_CACHE": "off",
             "PYTHONPATH": str(REPO)}
      proc = subprocess.run([sys.executable, __file__, "--child=compiles"],
                            env=env, cwd=REPO, timeout=CHILD_TIMEOUT_S, check=False)
      if proc.returncode:
        raise SystemExit("error: the compile-count child failed")


if __name__ == "__main__":
  app.run(main)
