"""kill -9 at seeded random points of collect, layout, icons and the
Microscope, then a rerun: every output byte-identical to an uninterrupted run.

CI-sized: one trial in the Microscope (the stage that runs alone; collect has
its own kill -9 test in tests/atlas/test_collect.py) and one in the dictionary
stage (positions, then training with checkpoints), each at a seeded delay;
bench/fault_injection.py runs several trials in every stage (collect, layout,
icons, Microscope, dictionary, pages) and writes the RESULTS table.
"""

import numpy as np
import pytest

import harness

SEED = 22


@pytest.fixture(scope="module", params=[("microscope",), ("dictionary",)],
                ids=lambda stages: stages[0])
def reference(tmp_path_factory, request):
  root = tmp_path_factory.mktemp("faults")
  photos = harness.make_photos(root / "photos")
  harness.run_stages(photos, root / "reference", log=lambda _: None,
                     stages=request.param)
  return photos, harness.snapshot(root / "reference"), request.param


def test_kill_then_rerun_is_byte_identical(reference, tmp_path):
  photos, snap, stages = reference
  delay = float(np.random.default_rng(SEED).uniform(0.5, 2.5))
  result = harness.trial(photos, tmp_path / "wd", snap, stages[0], delay,
                         stages=stages)
  assert result.killed_in in harness.STAGES, result   # killed mid-run
  assert not result.diffs, result
  assert not list((tmp_path / "wd").rglob("*.tmp"))   # cleaned on rerun
