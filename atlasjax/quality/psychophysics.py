"""Machine psychophysics: Borowski et al.'s two-alternative forced choice, judged by a network.

Borowski et al. (ICLR 2021) showed people a unit's *references* — images that
drive it most (and least) — and asked which of two natural *query* images
drives it more. With 9 references per side on GoogLeNet, people were right
82 ± 4 % of the time with synthetic references (feature visualizations) and
92 ± 2 % with natural ones (the unit's top and bottom photos). Zimmermann,
Klindt and Brendel (NeurIPS 2024) replaced the person by a perceptual
similarity model, the Machine Interpretability Score.

This module runs the same task with a *judge*: any :class:`~atlasjax.models.base.Model`
whose embedding decides each trial. The default decision rule (written out
in ``docs/methods/quality.md``):

* each image is resized to :data:`TRIAL_SIZE` px;
* its embedding is the vector the judge's classifier reads — its last
  feature map (``model.cam_layer``) averaged over space;
* a query's score is its mean cosine similarity to the max references
  minus its mean cosine similarity to the min references;
* a trial is correct when ``query_max``'s score exceeds ``query_min``'s.

Accuracy over trials comes with a percentile-bootstrap 95 % interval from an
explicit seed. The judge should be independent of the network under study
(:func:`default_judge`: EfficientNet-Lite0 judges GoogLeNet and the reverse).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax.models import base

# Every image is judged at this side (Borowski's stimuli and the judges' input).
TRIAL_SIZE = 224
# References per side (Borowski et al.: 9 max + 9 min).
DEFAULT_REFERENCES = 9
# Bootstrap resamples for the 95 % interval.
DEFAULT_RESAMPLES = 2000
CONFIDENCE = 0.95
# The judge of a model when none is given: a network independent of it.
DEFAULT_JUDGES = {"efficientnet_lite0": "bvlc_googlenet"}
FALLBACK_JUDGE = "efficientnet_lite0"
EMBED_BATCH = 32


def default_judge(model_name: str) -> str:
  """The judge used for ``model_name``: one network never judges itself."""
  return DEFAULT_JUDGES.get(model_name, FALLBACK_JUDGE)


def embedding_layer(judge: base.Model) -> str:
  """The judge's last spatial feature map (what its classifier reads)."""
  if judge.cam_layer is None:
    raise ValueError(f"judge {judge.name!r} declares no last feature map "
                     "(cam_layer); pick a convolutional judge such as "
                     "efficientnet_lite0.")
  return judge.cam_layer


def resize(images, size: int) -> jax.Array:
  """``[N, size, size, 3]``: RGB channels resized (bilinear) to ``size`` px."""
  images = jnp.asarray(images, jnp.float32)[..., :3]
  if images.shape[1:3] == (size, size):
    return images
  return jax.image.resize(images, (len(images), size, size, 3), "linear")


def embed(judge: base.Model, params, images, size: int = TRIAL_SIZE,
          batch_size: int = EMBED_BATCH) -> np.ndarray:
  """``[N, D]`` embeddings: the judge's last feature map averaged over space."""
  f = _embedder(judge, embedding_layer(judge), size)
  images = np.asarray(images)
  return np.concatenate([np.asarray(f(params, images[i:i + batch_size]))
                         for i in range(0, len(images), batch_size)])


@functools.lru_cache(maxsize=None)
def _embedder(judge: base.Model, layer: str, size: int):
  # One compiled program per judge and size, the weights an argument: a
  # closure over them would embed them as constants and recompile per call.
  return jax.jit(lambda params, x: judge.apply(params, resize(x, size), layers=(layer,))[
      layer].mean(axis=(1, 2)))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """``[len(a), len(b)]`` cosine similarities of two sets of row vectors."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
  b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
  return a @ b.T


def query_scores(refs_max: np.ndarray, refs_min: np.ndarray,
                 queries: np.ndarray) -> np.ndarray:
  """Per query: mean cosine to the max references minus that to the min ones."""
  return cosine(queries, refs_max).mean(1) - cosine(queries, refs_min).mean(1)


def judge_trials(refs_max: np.ndarray, refs_min: np.ndarray,
                 query_max: np.ndarray, query_min: np.ndarray) -> np.ndarray:
  """``[T]`` booleans: trial ``j`` is correct when ``query_max[j]`` scores above
  ``query_min[j]`` (embeddings in, the default decision rule)."""
  return (query_scores(refs_max, refs_min, query_max)
          > query_scores(refs_max, refs_min, query_min))


def bootstrap_interval(correct: Sequence[bool], seed: int,
                       resamples: int = DEFAULT_RESAMPLES,
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
  """Percentile-bootstrap interval of the accuracy (trials resampled)."""
  correct = np.asarray(correct, np.float64).reshape(-1)
  if correct.size == 0:
    raise ValueError("no trials to bootstrap; score at least one unit.")
  rng = np.random.default_rng(seed)
  means = rng.choice(correct, size=(resamples, correct.size)).mean(axis=1)
  tail = (1.0 - confidence) / 2 * 100
  lo, hi = np.percentile(means, [tail, 100 - tail])
  return float(lo), float(hi)


@dataclasses.dataclass(frozen=True)
class Accuracy:
  """Accuracy over trials with its bootstrap interval."""

  accuracy: float
  ci95: tuple[float, float]
  trials: int

  def to_json(self) -> dict:
    """The accuracy as ``quality.json`` stores it (rounded to 4 places)."""
    return {"accuracy": round(self.accuracy, 4),
            "ci95": [round(v, 4) for v in self.ci95], "trials": self.trials}


def accuracy(correct: Sequence[bool], seed: int,
             resamples: int = DEFAULT_RESAMPLES) -> Accuracy:
  """Mean of ``correct`` and its bootstrap 95 % interval (seeded)."""
  correct = np.asarray(correct, bool).reshape(-1)
  return Accuracy(float(correct.mean()) if correct.size else float("nan"),
                  bootstrap_interval(correct, seed, resamples), int(correct.size))


__all__ = ["TRIAL_SIZE", "DEFAULT_REFERENCES", "DEFAULT_RESAMPLES", "Accuracy",
           "accuracy", "bootstrap_interval", "cosine", "default_judge", "embed",
           "embedding_layer", "judge_trials", "query_scores", "resize"]
