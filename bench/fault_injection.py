"""Fault injection at scale: kill -9 each resumable stage at seeded random
points, rerun, compare every output byte with an uninterrupted run. The
stages: collect, layout, icons, the Microscope, and the dictionary stages
(``dictionary``: positions and training; ``pages``: feature pages).

  python bench/fault_injection.py --trials=3 --seed=22 > /tmp/faults.jsonl

For each stage ``--trials`` children are
started on the toy CNN and SIGKILLed a seeded random delay (``--min_delay`` …
``--max_delay`` s) after that stage's start marker (a kill that lands after the
child finished counts as "done", not as a fault); each is then rerun to completion in this
process and compared with the reference (tests/faults/harness.py). Then the
issue-22 probes (one per finding: bad inputs and hostile files) run under
pytest. Prints one JSON line per trial and per probe, then a summary line and
the Markdown table for bench/RESULTS.md. The machine and its 1-minute load
average are in every line: the machine is shared, so wall times are not the
point here; outcomes are.

With ``--fuzz_examples=N`` every file reader is then fuzzed with N Hypothesis
examples per file kind (tests/faults/test_fuzz_readers.py: mutated ``.npz``,
``.pth`` and JSON files must load correctly or be refused with one
``FileFormatError`` line, within a memory budget); failures are counted, not
raised, one JSON line and one table row per kind (issue 29):

  python bench/fault_injection.py --trials=0 --noprobes --fuzz_examples=1000
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "faults"), str(REPO / "tests"), str(REPO),
                str(REPO / "bench")]

import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position

_TRIALS = flags.DEFINE_integer("trials", 3, "Kills per stage.")
_SEED = flags.DEFINE_integer("seed", 22, "Seed of the kill points.")
_MIN_DELAY = flags.DEFINE_float("min_delay", 0.0,
                                "Kill delay after the stage marker, at least (s).")
_MAX_DELAY = flags.DEFINE_float("max_delay", 1.5,
                                "Kill delay after the stage marker, at most (s).")
_PROBES = flags.DEFINE_bool("probes", True, "Also run the issue-22 probes.")
_STAGES = flags.DEFINE_list("stages", list(harness.STAGES),
                            "Stages to kill (--trials=0: probes only, no "
                            "reference run).")
PROBE_FILES = ("tests/faults/test_findings.py", "tests/faults/test_workdir_rule.py",
               "tests/test_data.py",
               "tests/experiments/test_validation_before_write.py",
               "tests/test_code_shape.py")
PROBE_FILTER = ("not (lookup_order or download or fresh_machine or offline or "
                "packaged or local_copy_verifies or prefers_local)")


def _emit(record: dict) -> None:
  print(json.dumps({**record, "machine": machine.describe()}), flush=True)


def run_trials(root: pathlib.Path, rng) -> list[dict]:
  if not _TRIALS.value:
    return []
  photos = harness.make_photos(root / "photos")
  stages = harness.needed(_STAGES.value)
  harness.run_stages(photos, root / "reference", log=lambda _: None, stages=stages)
  reference = harness.snapshot(root / "reference")
  rows = []
  for stage in _STAGES.value:
    for t in range(_TRIALS.value):
      delay = float(rng.uniform(_MIN_DELAY.value, _MAX_DELAY.value))
      result = harness.trial(photos, root / f"{stage}_{t}", reference, stage, delay,
                             stages=stages)
      row = {"workload": "fault_injection", "stage": stage, "trial": t,
             "delay_s": round(delay, 3), "killed_in": result.killed_in,
             "child_s": round(result.elapsed_s, 2),
             "leftover_tmp": result.leftovers, "files": len(reference),
             "identical": not result.diffs, "diffs": result.diffs[:5]}
      _emit(row)
      rows.append(row)
  return rows


def run_probes() -> list[dict]:
  out = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
       *PROBE_FILES, "-k", PROBE_FILTER], cwd=REPO, capture_output=True,
      text=True, check=False).stdout
  rows = []
  for outcome, test in re.findall(r"^(PASSED|FAILED|ERROR) (\S+)", out, re.M):
    row = {"workload": "issue22_probe", "test": test, "outcome": outcome}
    _emit(row)
    rows.append(row)
  return rows


# The multi-process icon path on a real two-device mesh (one process): a NaN
# direction among 4 icons in chunks of 2. Run in a child (the device count is
# fixed when JAX starts); prints the error line or the pixels returned.
GLOBAL_NAN_PROBE = """
import dataclasses, pathlib, sys, tempfile
import jax, numpy as np
import toy_model
from atlasjax.atlas import render_atlas
cfg = render_atlas.AtlasConfig(layer="conv2", icon_size=16, steps=2,
                               transforms="none", param="pixel", whiten=False)
dirs = np.ones((4, 16), np.float32)
dirs[2, 3] = np.nan
make = render_atlas.make_atlas_objective("conv2", None, 1.0, "cosine")
folder = pathlib.Path(tempfile.mkdtemp())
paths = [folder / "chunk_0.npy", folder / "chunk_1.npy"]
try:
  icons = render_atlas._render_icons_global(
      toy_model.TOY_MODEL, toy_model.toy_params(), make, dirs,
      dataclasses.replace(cfg.render_config(), chunk_size=2),
      jax.random.PRNGKey(0), [(0, 2), (2, 4)], paths, "conv2")
  print("returned", jax.device_count(), int(icons[2].min()), int(icons[2].max()))
except Exception as e:
  print("refused", jax.device_count(), type(e).__name__, str(e))
print("saved", sorted(p.name for p in folder.iterdir()))
"""


def run_global_nan_probe() -> dict:
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
  out = subprocess.run([sys.executable, "-c", GLOBAL_NAN_PROBE], cwd=REPO,
                       env=env, capture_output=True, text=True, check=False)
  lines = [l for l in out.stdout.splitlines() if l.startswith(("refused", "returned",
                                                               "saved"))]
  refused = bool(lines) and lines[0].startswith("refused 2 RenderError")
  row = {"workload": "issue22_probe", "test": "global_icon_path_nan_2_devices",
         "outcome": "PASSED" if refused and lines[-1] == "saved ['chunk_0.npy']"
         else "FAILED", "output": lines or out.stderr[-500:]}
  _emit(row)
  return row


_FUZZ_EXAMPLES = flags.DEFINE_integer(
    "fuzz_examples", 0, "Hypothesis examples per file kind (0: no fuzzing).")
_FUZZ_SEED = flags.DEFINE_integer("fuzz_seed", 29, "Seed of the fuzzing.")
_FUZZ_KINDS = flags.DEFINE_list("fuzz_kinds", [], "File kinds to fuzz "
                                "(default all).")


def run_fuzz() -> list[dict]:
  """``--fuzz_examples`` mutated files of each kind; one row per kind."""
  if not _FUZZ_EXAMPLES.value:
    return []
  import time  # pylint: disable=g-import-not-at-top
  import test_fuzz_readers as fuzz  # pylint: disable=g-import-not-at-top
  unknown = set(_FUZZ_KINDS.value) - set(fuzz.KINDS)
  if unknown:
    raise app.UsageError(f"--fuzz_kinds: unknown {sorted(unknown)}; use some "
                         f"of {', '.join(fuzz.KINDS)}.")
  rows = []
  for name in _FUZZ_KINDS.value or list(fuzz.KINDS):
    start = time.perf_counter()
    fuzz.fuzz_test(fuzz.KINDS[name], _FUZZ_EXAMPLES.value, seed=_FUZZ_SEED.value,
                   tally=True)()
    outcomes = {o: n for (k, o), n in fuzz.OUTCOMES.items() if k == name}
    row = {"workload": "fuzz_readers", "kind": name,
           "examples": sum(outcomes.values()),
           "loaded": outcomes.pop("loaded", 0),
           "refused": outcomes.pop("refused", 0), "other": outcomes,
           "first_errors": {o: m for (k, o), m in fuzz.FIRST_ERRORS.items()
                            if k == name},
           "seconds": round(time.perf_counter() - start, 1),
           "seed": _FUZZ_SEED.value}
    _emit(row)
    rows.append(row)
  return rows


def fuzz_table(rows: list[dict]) -> str:
  lines = ["| file kind | examples | loaded correctly | refused (one line) | "
           "other outcome |", "|---|---|---|---|---|"]
  for r in rows:
    other = ", ".join(f"{o}: {n}" for o, n in r["other"].items()) or "0"
    lines.append(f"| {r['kind']} | {r['examples']} | {r['loaded']} | "
                 f"{r['refused']} | {other} |")
  return "\n".join(lines)


def table(trials: list[dict], probes: list[dict]) -> str:
  lines = ["| stage | kills | killed mid-stage | temporaries left by the kill | "
           "reruns byte-identical |", "|---|---|---|---|---|"]
  for stage in _STAGES.value:
    rows = [r for r in trials if r["stage"] == stage]
    lines.append(
        f"| {stage} | {len(rows)} | {sum(r['killed_in'] == stage for r in rows)} | "
        f"{sum(r['leftover_tmp'] for r in rows)} | "
        f"{sum(r['identical'] for r in rows)}/{len(rows)} |")
  if probes:
    passed = sum(p["outcome"] == "PASSED" for p in probes)
    lines += ["", f"Bad inputs and hostile files (issue-22 probes): {passed}/"
              f"{len(probes)} refused or handled as specified."]
  return "\n".join(lines)


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  unknown = set(_STAGES.value) - set(harness.STAGES)
  if unknown:
    raise app.UsageError(f"--stages: unknown {sorted(unknown)}; use some of "
                         f"{', '.join(harness.STAGES)}.")
  rng = np.random.default_rng(_SEED.value)
  with tempfile.TemporaryDirectory() as tmp:
    trials = run_trials(pathlib.Path(tmp), rng)
  probes = run_probes() + [run_global_nan_probe()] if _PROBES.value else []
  fuzzed = run_fuzz()
  _emit({"workload": "fault_injection_summary", "kills": len(trials),
         "identical": sum(r["identical"] for r in trials),
         "probes": len(probes),
         "probes_passed": sum(p["outcome"] == "PASSED" for p in probes),
         "fuzz_examples": sum(r["examples"] for r in fuzzed),
         "fuzz_other": sum(sum(r["other"].values()) for r in fuzzed)})
  print(table(trials, probes))
  if fuzzed:
    print(fuzz_table(fuzzed))


if __name__ == "__main__":
  app.run(main)
