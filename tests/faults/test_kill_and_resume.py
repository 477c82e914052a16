"""kill -9 at seeded random points of collect, layout, icons and the
Microscope, then a rerun: every output byte-identical to an uninterrupted run.

CI-sized: one trial, in the Microscope (the stage that runs alone; collect has
its own kill -9 test in tests/atlas/test_collect.py) at a seeded delay;
bench/fault_injection.py runs several trials in every stage (collect, layout,
icons, Microscope) and writes the RESULTS table.
"""

import numpy as np
import pytest

import harness

SEED = 22
STAGES = ("microscope",)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  root = tmp_path_factory.mktemp("faults")
  photos = harness.make_photos(root / "photos")
  harness.run_stages(photos, root / "reference", log=lambda _: None,
                     stages=STAGES)
  return photos, harness.snapshot(root / "reference")


def test_kill_then_rerun_is_byte_identical(reference, tmp_path):
  photos, snap = reference
  delay = float(np.random.default_rng(SEED).uniform(0.5, 2.5))
  result = harness.trial(photos, tmp_path / "wd", snap, "microscope", delay,
                         stages=STAGES)
  assert result.killed_in in harness.STAGES, result   # killed mid-run
  assert not result.diffs, result
  assert not list((tmp_path / "wd").rglob("*.tmp"))   # cleaned on rerun
