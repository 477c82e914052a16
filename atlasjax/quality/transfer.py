"""Transferability and activation reached, moved from ``bench/`` into the library.

* Transferability (Fel et al. 2023, the MaCo paper): class visualizations
  rendered on one network and classified by another; how often the target
  class is the judge's top-1 / top-5 (:func:`class_set`,
  :func:`judge_logits`, :func:`hit_rates`).
* Activation reached: how strongly each unit's visualization drives it,
  relative to the best photo of a set (:func:`activation_ratio`; the
  faithfulness check of ``bench/faithfulness.py``).
"""

from __future__ import annotations

import jax
import numpy as np

from atlasjax.models import base
from atlasjax.quality import psychophysics

IMAGENET_CLASSES = 1000
TOP_K = 5


def class_set(n: int, classes: int = IMAGENET_CLASSES) -> np.ndarray:
  """``n`` class indices spread evenly over ``classes`` (ends excluded)."""
  return np.round(np.linspace(0, classes - 1, n + 2)[1:-1]).astype(np.int32)


def judge_logits(model: base.Model, params, images) -> np.ndarray:
  """``[N, classes]`` logits of ``images`` resized to ``model.input_size``."""
  x = psychophysics.resize(images, model.input_size)
  return np.asarray(model.apply(params, x, layers=("logits",))["logits"])


def hit_rates(logits: np.ndarray, classes: np.ndarray) -> dict:
  """Top-1 / top-5 rates of the target ``classes`` and their mean softmax."""
  logits = np.asarray(logits, np.float64)
  rows = np.arange(len(classes))
  ranks = (logits > logits[rows, classes][:, None]).sum(1)
  probs = np.asarray(jax.nn.softmax(logits, axis=-1))
  return {"top1": float((ranks < 1).mean()), "top5": float((ranks < TOP_K).mean()),
          "target_prob": float(probs[rows, classes].mean())}


def activation_ratio(reached: np.ndarray, best_photo: np.ndarray) -> np.ndarray:
  """Per unit: activation its visualization reaches over the best photo's
  (> 1: the render drives the unit harder than any photo of the set)."""
  best = np.asarray(best_photo, np.float64)
  return np.asarray(reached, np.float64) / np.where(np.abs(best) > 1e-12, best, np.nan)


__all__ = ["activation_ratio", "class_set", "hit_rates", "judge_logits"]
