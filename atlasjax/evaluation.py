"""Top-k classification accuracy of a model on a folder of labelled photos.

Labels come from ``<wnid>_…`` file names (or a ``<wnid>`` parent folder).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import jax
import numpy as np

from atlasjax import images as images_lib
from atlasjax import labels as labels_lib
from atlasjax import progress
from atlasjax.models import base


def label_of(path: str, labels: labels_lib.Labels) -> int:
  """Class index of a file from its name or its parent folder's name."""
  for part in (os.path.basename(path), os.path.basename(os.path.dirname(path))):
    wnid = labels_lib.wnid_from_filename(part)
    if wnid is not None:
      return labels.index_of_wnid(wnid)
  raise ValueError(f"Cannot tell the class of {path}: its name (or its folder's) "
                   "must start with a WordNet id such as n01440764_.")


@dataclasses.dataclass
class EvalResult:
  n: int
  top1: float
  top5: float
  images_per_sec: float
  logits: np.ndarray        # [n, classes], in sorted file-name order
  paths: list[str]
  report: images_lib.ReadReport

  def metrics(self) -> dict:
    """Top-1, top-5, speed and skipped count as a JSON-ready dict."""
    return {"n": self.n, "top1": round(self.top1, 6), "top5": round(self.top5, 6),
            "images_per_sec": round(self.images_per_sec, 2),
            "skipped": self.report.skipped}


def evaluate(model: base.Model, params, paths: list[str],
             labels: labels_lib.Labels, batch_size: int = 32) -> EvalResult:
  """Classifies ``paths`` and scores top-1/5.

  Photos get the standard evaluation crop scaled to the model's input size
  (:func:`atlasjax.images.eval_sizes`: 256/224 for a 224 px model).
  """
  paths = sorted(paths, key=os.path.basename)
  targets = {p: label_of(p, labels) for p in paths}
  forward = jax.jit(lambda p, x: model.apply(p, x, layers=("logits",))["logits"])
  report = images_lib.ReadReport()
  logits, kept = [], []
  start = None
  with progress.bar(len(paths), "evaluate", unit="image") as bar:
    load = functools.partial(images_lib.load_for_model,
                             input_size=model.input_size)
    for batch in images_lib.iter_batches(paths, batch_size, load=load,
                                         report=report):
      if start is None:  # Exclude compilation of the first batch shape.
        forward(params, batch.images).block_until_ready()
        start = time.perf_counter()
      logits.append(np.asarray(forward(params, batch.images)))
      kept += batch.paths
      bar.update(len(batch.paths))
  elapsed = time.perf_counter() - (start or time.perf_counter())
  if not kept:
    raise ValueError("No readable images to evaluate: " + report.summary())
  logits = np.concatenate(logits)
  y = np.array([targets[p] for p in kept])
  top5 = np.argsort(-logits, axis=1)[:, :5]
  return EvalResult(
      n=len(kept), top1=float((top5[:, 0] == y).mean()),
      top5=float((top5 == y[:, None]).any(axis=1).mean()),
      images_per_sec=len(kept) / max(elapsed, 1e-9), logits=logits,
      paths=kept, report=report)
