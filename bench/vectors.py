"""Large sets of activation-like vectors for the layout benchmarks (no flags).

``make_vectors(n, dims, source, mode=...)`` grows a collection's real mixed4c
activations to ``n`` rows: ``interpolate`` makes each row a random convex
blend of a real vector and one of its 10 nearest real neighbours (cosine),
times ±5 % noise; ``replicate`` tiles the real vectors with ±10 % noise. With
no source: non-negative sparse Gaussian vectors.
"""

import numpy as np

INTERPOLATE_NEIGHBOURS = 10


def make_vectors(n, dims, source, seed=0, mode="replicate"):
  rng = np.random.default_rng(seed)
  if source:
    from atlasjax.atlas import collect
    base = np.asarray(collect.Collection.open(source).vectors_memmap("mixed4c"),
                      np.float32)
  else:
    base = np.maximum(rng.normal(size=(4096, dims)), 0).astype(np.float32)
  out = np.empty((n, base.shape[1]), np.float32)
  if mode == "interpolate":
    unit = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    neighbours = np.argsort(-sim, axis=1)[:, :INTERPOLATE_NEIGHBOURS]
    for lo in range(0, n, 65536):
      hi = min(n, lo + 65536)
      a = rng.integers(0, len(base), hi - lo)
      b = neighbours[a, rng.integers(0, INTERPOLATE_NEIGHBOURS, hi - lo)]
      t = rng.uniform(0, 1, (hi - lo, 1)).astype(np.float32)
      noise = rng.uniform(0.95, 1.05, (hi - lo, base.shape[1])).astype(np.float32)
      out[lo:hi] = ((1 - t) * base[a] + t * base[b]) * noise
    return out
  for lo in range(0, n, len(base)):
    hi = min(n, lo + len(base))
    noise = rng.uniform(0.9, 1.1, size=(hi - lo, base.shape[1])).astype(np.float32)
    out[lo:hi] = base[: hi - lo] * noise
  return out
