"""Non-negative matrix factorization in JAX, for neuron groups.

Lucid's ``ChannelReducer(n, "NMF")`` (the "Building Blocks" article) wraps
scikit-learn's NMF to split a photo's ``[H·W, C]`` activations into ``n``
*neuron groups*: ``activations ≈ spatial @ channels`` with both factors
non-negative, ``spatial`` ``[H·W, n]`` saying where each group is active and
``channels`` ``[n, C]`` saying which neurons it combines.

This module solves the same problem on device with the solver scikit-learn's
default (coordinate descent, ``solver="cd"``) is a form of: HALS, hierarchical
alternating least squares (Cichocki & Phan 2009), where each rank-one factor in
turn is set to its exact non-negative least-squares optimum given the others.
It starts from scikit-learn's default initialisation, NNDSVDa (Boutsidis &
Gallopoulos 2008: the SVD's leading factors split into their positive parts,
zeros filled with the data's mean), which needs no random key, and runs a fixed
number of sweeps in one ``lax.fori_loop``: no host round trip per iteration.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

# HALS sweeps. scikit-learn's NMF stops after at most 200 CD sweeps (or at its
# tolerance); more sweeps of the same update reach at least its fit.
DEFAULT_ITERATIONS = 400
# Factors are kept at least this large: an exactly-zero row of one factor would
# stay zero for ever under HALS (Gillis & Glineur 2012 use the same floor).
FLOOR = 1e-12


class Factorization(NamedTuple):
  """``x ≈ spatial @ channels``, both non-negative."""
  spatial: jax.Array    # [N, rank]
  channels: jax.Array   # [rank, C]


def nndsvda(x: jax.Array, rank: int) -> Factorization:
  """NNDSVDa initialisation (scikit-learn's default for NMF).

  Each singular triple ``(u, s, v)`` after the first is replaced by the
  positive or negative part of ``u`` and ``v`` (whichever pair has the larger
  product of norms); zeros are then filled with the mean of ``x``, so every
  entry can move under multiplicative or HALS updates.
  """
  u, s, vt = jnp.linalg.svd(x, full_matrices=False)
  u, s, vt = u[:, :rank], s[:rank], vt[:rank]

  def split(ui, vi):
    up, un = jnp.maximum(ui, 0), jnp.maximum(-ui, 0)
    vp, vn = jnp.maximum(vi, 0), jnp.maximum(-vi, 0)
    nup, nun = jnp.linalg.norm(up), jnp.linalg.norm(un)
    nvp, nvn = jnp.linalg.norm(vp), jnp.linalg.norm(vn)
    positive = nup * nvp >= nun * nvn
    uu = jnp.where(positive, up / jnp.maximum(nup, FLOOR), un / jnp.maximum(nun, FLOOR))
    vv = jnp.where(positive, vp / jnp.maximum(nvp, FLOOR), vn / jnp.maximum(nvn, FLOOR))
    sigma = jnp.where(positive, nup * nvp, nun * nvn)
    return uu, vv, sigma

  uu, vv, sigma = jax.vmap(split, in_axes=(1, 0))(u, vt)
  # The leading pair is non-negative up to a common sign (Perron-Frobenius).
  lead = (jnp.abs(u[:, 0]), jnp.abs(vt[0]))
  uu = uu.at[0].set(lead[0])
  vv = vv.at[0].set(lead[1])
  sigma = sigma.at[0].set(1.0)
  scale = jnp.sqrt(s * sigma)
  w = (uu * scale[:, None]).T
  h = vv * scale[:, None]
  fill = x.mean()
  return Factorization(jnp.where(w == 0, fill, w), jnp.where(h == 0, fill, h))


def _hals_rows(h: jax.Array, cross: jax.Array, gram: jax.Array) -> jax.Array:
  """One HALS sweep over the rows of ``h`` in ``x ≈ w @ h``.

  ``cross = wᵀx`` ``[r, C]`` and ``gram = wᵀw`` ``[r, r]``; row ``k`` becomes
  ``max(0, h_k + (cross_k − gram_k @ h) / gram_kk)``, its exact non-negative
  least-squares optimum with the other rows fixed.
  """
  def row(k, h):
    step = (cross[k] - gram[k] @ h) / jnp.maximum(gram[k, k], FLOOR)
    return h.at[k].set(jnp.maximum(h[k] + step, FLOOR))
  return jax.lax.fori_loop(0, h.shape[0], row, h)


@functools.partial(jax.jit, static_argnames=("rank", "iterations"))
def nmf(x: jax.Array, rank: int, iterations: int = DEFAULT_ITERATIONS
        ) -> Factorization:
  """Factorizes a non-negative ``x`` ``[N, C]`` as ``spatial @ channels``.

  Deterministic (NNDSVDa start, fixed HALS sweeps); see the module docstring.

  Args:
    x: non-negative data, e.g. a photo's activations reshaped to ``[H·W, C]``.
    rank: number of factors (neuron groups).
    iterations: HALS sweeps (each updates both factors once).

  Returns:
    A :class:`Factorization` with ``spatial`` ``[N, rank]`` and ``channels``
    ``[rank, C]``.
  """
  x = jnp.asarray(x, jnp.float32)
  start = nndsvda(x, rank)

  def sweep(_, wh):
    w, h = wh
    h = _hals_rows(h, w.T @ x, w.T @ w)
    w = _hals_rows(w.T, h @ x.T, h @ h.T).T
    return w, h

  w, h = jax.lax.fori_loop(0, iterations, sweep, tuple(start))
  return Factorization(w, h)


def relative_error(x, f: Factorization) -> jax.Array:
  """``‖x − spatial @ channels‖_F / ‖x‖_F``."""
  x = jnp.asarray(x, jnp.float32)
  return jnp.linalg.norm(x - f.spatial @ f.channels) / jnp.linalg.norm(x)
