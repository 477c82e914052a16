r"""Layout time and peak memory at scale: N vectors of 512 dims.

  python bench/layout_bench.py --n=100000,1000000 [--source=WORKDIR] [--pca_dims=0,50]
  python bench/layout_bench.py --n=1000000 --fit_sample=100000 --source=WORKDIR

Vectors come from a collection's real mixed4c activations (``--source``):
``--mode=interpolate`` (default) makes each row a random convex blend of a real
vector and one of its 10 nearest real neighbours (cosine), times ±5 % noise,
so the rows fill the real vectors' neighbourhood graph the way a larger sample
would; ``--mode=replicate`` tiles the real vectors with ±10 % noise (at 10⁶ rows
that is ~300 near-copies of each, i.e. isolated cliques: an easy, unrealistic
neighbour graph). Without a source: synthetic non-negative sparse vectors.
Each configuration runs in its own subprocess so ``ru_maxrss`` is that run's
peak memory. Prints one JSON line per run.
"""

import json
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np

from vectors import make_vectors

_N = flags.DEFINE_list("n", ["100000", "1000000"], "Numbers of vectors.")
_SOURCE = flags.DEFINE_string("source", None, "Work directory with a mixed4c "
                              "collection to grow (default: synthetic).")
_PCA = flags.DEFINE_list("pca_dims", ["0"], "PCA dims before UMAP (0 = none).")
_DIMS = flags.DEFINE_integer("dims", 512, "Vector dimension.")
_MODE = flags.DEFINE_enum("mode", "interpolate", ["interpolate", "replicate"],
                          "How a source's real vectors are grown to N rows.")
_FIT = flags.DEFINE_integer("fit_sample", 0, "Fit UMAP on this many vectors and "
                            "transform the rest (0 = fit on all).")
_CHILD = flags.DEFINE_boolean("child", False, "Internal: run one configuration.")
_TIMEOUT = flags.DEFINE_integer("timeout", 5400, "Seconds per configuration.")


def child(n, pca, source, fit_sample):
  sys.path.insert(0, ".")
  from atlasjax import progress
  from atlasjax.atlas import layout
  import machine
  vectors = make_vectors(n, _DIMS.value, source, mode=_MODE.value)
  t0 = time.perf_counter()
  layout.whitening_matrix(vectors)
  t1 = time.perf_counter()
  features = layout.pca_reduce(vectors, pca) if pca else vectors
  t2 = time.perf_counter()
  if fit_sample and fit_sample < n:
    with progress.enabled(True):   # chunk progress on stderr, even in a log
      raw = layout.umap_layout_sampled(features, layout.PRESET_MIXED4_5,
                                       seed=0, fit_sample=fit_sample)
  else:
    raw = layout.umap_layout(features, layout.PRESET_MIXED4_5, seed=0)
  xy = layout.normalize_layout(raw)
  t3 = time.perf_counter()
  peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
  print(json.dumps({
      "bench": "layout", "n": n, "dims": int(vectors.shape[1]), "pca_dims": pca,
      "source": f"{_MODE.value}d mixed4c" if source else "synthetic",
      "fit_sample": fit_sample or n,
      "umap": "n_neighbors=50 min_dist=0.05 cosine seed=0 (serial)",
      "whitening_s": round(t1 - t0, 2), "pca_s": round(t2 - t1, 2),
      "umap_s": round(t3 - t2, 1), "total_s": round(t3 - t0, 1),
      "peak_rss_gb": round(peak_gb, 2), "finite": bool(np.isfinite(xy).all()),
      "machine": machine.describe()}), flush=True)


def main(argv):
  del argv
  if _CHILD.value:
    child(int(_N.value[0]), int(_PCA.value[0]), _SOURCE.value, _FIT.value)
    return
  for n in _N.value:
    for pca in _PCA.value:
      cmd = [sys.executable, __file__, "--child", f"--n={n}", f"--pca_dims={pca}",
             f"--dims={_DIMS.value}", f"--fit_sample={_FIT.value}",
             f"--mode={_MODE.value}"]
      if _SOURCE.value:
        cmd.append(f"--source={_SOURCE.value}")
      try:
        subprocess.run(cmd, check=True, timeout=_TIMEOUT.value)
      except subprocess.TimeoutExpired:
        print(json.dumps({"bench": "layout", "n": int(n), "pca_dims": int(pca),
                          "error": f"did not finish in {_TIMEOUT.value} s"}),
              flush=True)


if __name__ == "__main__":
  app.run(main)
