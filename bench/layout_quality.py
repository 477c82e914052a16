r"""Is a subsample-fitted layout as faithful as a full UMAP fit?

  python bench/layout_quality.py --source=WORKDIR [--n=30000 --fit_sample=10000]

Grows a collection's real mixed4c vectors to N rows (``bench/vectors.py``,
``interpolate`` mode), lays them out twice, UMAP on all N and UMAP on a seeded
subsample with ``transform`` for the rest (``LayoutConfig.fit_sample``), and
scores both by k-NN recall: for a seeded set of query vectors, the fraction of
their k nearest neighbours in activation space (cosine, the UMAP metric) that
are also among their k nearest in the 2-D layout. Held-out (transformed)
queries are scored separately from fitted ones. One JSON line.
"""

import json
import time

from absl import app
from absl import flags
import numpy as np

import machine
from vectors import make_vectors
from atlasjax.atlas import layout

_SOURCE = flags.DEFINE_string("source", None, "Work directory with a mixed4c "
                              "collection.", required=True)
_N = flags.DEFINE_integer("n", 30000, "Vectors.")
_FIT = flags.DEFINE_integer("fit_sample", 10000, "Subsample the UMAP is fitted on.")
_K = flags.DEFINE_list("k", ["10", "100"], "Neighbour counts compared.")
_QUERIES = flags.DEFINE_integer("queries", 2000, "Query vectors scored.")


def knn(points, queries, k, cosine):
  if cosine:
    points = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    d = -(points[queries] @ points.T)
  else:
    d = ((points[queries, None, :] - points[None, :, :]) ** 2).sum(-1)
  d[np.arange(len(queries)), queries] = np.inf   # Not its own neighbour.
  return np.argpartition(d, k, axis=1)[:, :k]


def recall(a, b):
  return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)]))


def main(argv):
  del argv
  n, ks = _N.value, [int(v) for v in _K.value]
  vectors = make_vectors(n, 512, _SOURCE.value, mode="interpolate")
  preset = layout.PRESET_MIXED4_5
  t = time.perf_counter()
  full = layout.umap_layout(vectors, preset, seed=0)
  t_full = time.perf_counter() - t
  t = time.perf_counter()
  sampled = layout.umap_layout_sampled(vectors, preset, seed=0,
                                       fit_sample=_FIT.value)
  t_sampled = time.perf_counter() - t
  rng = np.random.default_rng(1)
  queries = np.sort(rng.choice(n, _QUERIES.value, replace=False))
  in_fit = np.isin(queries, layout.fit_sample_indices(n, _FIT.value, 0))
  result = {"bench": "layout_quality", "n": n, "fit_sample": _FIT.value,
            "queries": int(len(queries)), "full_seconds": round(t_full, 1),
            "sampled_seconds": round(t_sampled, 1)}
  for k in ks:
    truth = knn(vectors, queries, k, cosine=True)
    result[f"chance_recall_k{k}"] = round(k / n, 5)
    for name, xy in (("full", full), ("sampled", sampled)):
      found = knn(xy.astype(np.float64), queries, k, cosine=False)
      result[f"{name}_recall_k{k}"] = round(recall(truth, found), 4)
      if name == "sampled":
        result[f"sampled_recall_k{k}_fitted_queries"] = round(
            recall(truth[in_fit], found[in_fit]), 4)
        result[f"sampled_recall_k{k}_transformed_queries"] = round(
            recall(truth[~in_fit], found[~in_fit]), 4)
  result["machine"] = machine.describe()
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  app.run(main)
