"""``experiments/evaluate.py`` on the 800 sample photos reproduces the reference
accuracy of the BVLC GoogLeNet (top-1 75.25 %, top-5 93.13 %)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from atlasjax import evaluation
from atlasjax import images as images_lib
from atlasjax import labels as labels_lib

REPO = pathlib.Path(__file__).resolve().parents[1]

TOP1, TOP5, TOLERANCE = 0.7525, 0.93125, 0.005


@pytest.fixture(scope="module")
def run(data_root, tmp_path_factory):
  """Runs the script once (about 40 s on 2 CPU cores)."""
  out = tmp_path_factory.mktemp("evaluate") / "logits.npy"
  env = dict(os.environ, ATLASJAX_DATA=str(data_root),
             PYTHONPATH=os.pathsep.join(
                 [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  proc = subprocess.run(
      [sys.executable, str(REPO / "experiments" / "evaluate.py"),
       f"--save_logits={out}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  return proc, out


def test_sample_accuracy(run):
  proc, _ = run
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  assert lines, proc.stdout
  metrics = json.loads(lines[-1])
  print(metrics)
  assert metrics["n"] == 800 and metrics["skipped"] == 0
  assert abs(metrics["top1"] - TOP1) <= TOLERANCE, metrics
  assert abs(metrics["top5"] - TOP5) <= TOLERANCE, metrics
  assert metrics["images_per_sec"] > 0


def test_saved_logits(run, googlenet, sample_dir, data_root):
  _, path = run
  logits = np.load(path)
  assert logits.shape == (800, 1000) and logits.dtype == np.float32
  assert np.isfinite(logits).all()
  # Rows are in sorted file-name order and match an in-process forward pass.
  files = sorted(images_lib.list_images(sample_dir), key=os.path.basename)
  labels = labels_lib.load(data_root)
  y = np.array([evaluation.label_of(p, labels) for p in files])
  assert abs((logits.argmax(1) == y).mean() - TOP1) <= TOLERANCE
  model, params = googlenet
  picks = [0, 1, 400, 799]
  batch = np.stack([images_lib.load_eval(files[i]) for i in picks])
  mine = np.asarray(jax.jit(
      lambda p, x: model.apply(p, x, layers=("logits",))["logits"])(params, batch))
  scale = np.abs(logits[picks]).max()
  assert np.abs(mine - logits[picks]).max() <= 1e-4 * scale
