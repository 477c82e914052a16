"""Sparse dictionaries: TopK sparse autoencoders over a layer's positions.

A dictionary writes each activation vector ``x`` ``[C]`` as a sparse,
non-negative combination of ``F`` directions (Gao et al. 2024, "Scaling and
evaluating sparse autoencoders")::

  z = topk_k(relu((x / input_scale − decoder_bias) @ encoder + encoder_bias))
  x̂ = (z @ decoder + decoder_bias) · input_scale

``topk_k`` keeps the ``k`` largest entries of each row and zeroes the rest;
the decoder's rows have unit norm, so a code is the length of its feature's
direction in the scaled activation space. This formula, and the file that
holds its arrays (``dictionary.npz``: ``encoder`` ``[C, F]``,
``encoder_bias`` ``[F]``, ``decoder`` ``[F, C]``, ``decoder_bias`` ``[C]``,
``k``, ``input_scale``), are the interchange format: anything that reads
them reproduces atlasjax's codes.

Training (:mod:`atlasjax.features.train`) uses TopK or BatchTopK (Bussmann
et al. 2024: the ``k·B`` largest pre-activations of the whole batch, so
vectors may use more or fewer than ``k``) and an auxiliary loss that gives
gradient to dead features; this module holds the dictionary itself and the
pure functions on it.
"""

from __future__ import annotations

import os
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax import readers
from atlasjax.features import store

# Keys of dictionary.npz (the interchange format).
ARRAYS = ("encoder", "encoder_bias", "decoder", "decoder_bias")
SCALARS = ("k", "input_scale")
NORM_EPS = 1e-12


class Dictionary(NamedTuple):
  """A trained dictionary (see the module docstring for the formula)."""
  encoder: jax.Array        # [C, F]
  encoder_bias: jax.Array   # [F]
  decoder: jax.Array        # [F, C], unit-norm rows
  decoder_bias: jax.Array   # [C], in scaled units
  k: int
  input_scale: float

  @property
  def features(self) -> int:
    """Dictionary size ``F``."""
    return self.encoder.shape[1]

  @property
  def depth(self) -> int:
    """Channels ``C`` of the layer it encodes."""
    return self.encoder.shape[0]


def pre_activations(d: Dictionary, x: jax.Array) -> jax.Array:
  """``(x / input_scale − decoder_bias) @ encoder + encoder_bias``, ``[N, F]``."""
  return (x / d.input_scale - d.decoder_bias) @ d.encoder + d.encoder_bias


def _keep(values: jax.Array, flat_index: jax.Array) -> jax.Array:
  """``values`` with every entry not at ``flat_index`` set to zero.

  The kept set is a boolean mask (a scatter of ``True``) and the result a
  ``where``: its gradient is the mask times the incoming gradient, one
  elementwise product, where scattering the kept values would cost a scatter
  forward and a gather back (``bench/sae_profile.py``: a training step
  about 12 % faster on CPU).
  """
  mask = jnp.zeros(values.size, bool).at[flat_index.reshape(-1)].set(True)
  return jnp.where(mask.reshape(values.shape), values, 0.0)


def topk(values: jax.Array, k: int) -> jax.Array:
  """Keeps the ``k`` largest entries of each row (ties: lowest index first)."""
  _, index = jax.lax.top_k(jax.lax.stop_gradient(values), k)
  rows = jnp.arange(values.shape[0])[:, None] * values.shape[1]
  return _keep(values, rows + index)


def batch_topk(values: jax.Array, k: int) -> jax.Array:
  """BatchTopK: keeps the ``k · N`` largest entries of the whole ``[N, F]``."""
  _, index = jax.lax.top_k(jax.lax.stop_gradient(values).reshape(-1),
                           k * values.shape[0])
  return _keep(values, index)


def encode(d: Dictionary, x: jax.Array) -> jax.Array:
  """Codes ``z`` ``[N, F]`` of activation vectors ``x`` ``[N, C]``."""
  return topk(jax.nn.relu(pre_activations(d, jnp.asarray(x, jnp.float32))), d.k)


def decode(d: Dictionary, z: jax.Array) -> jax.Array:
  """Reconstructions ``x̂`` ``[N, C]`` in activation units."""
  return (z @ d.decoder + d.decoder_bias) * d.input_scale


def reconstruct(d: Dictionary, x: jax.Array) -> jax.Array:
  """``x̂``: ``x`` encoded and decoded by ``d`` (the interchange formula)."""
  return decode(d, encode(d, x))


def unit_rows(m: jax.Array) -> jax.Array:
  """``m`` with every row scaled to unit L2 norm (decoder rows)."""
  return m / jnp.maximum(jnp.linalg.norm(m, axis=-1, keepdims=True), NORM_EPS)


def explained_variance(x: np.ndarray, x_hat: np.ndarray) -> float:
  """R² = 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖² over all vectors and channels."""
  x = np.asarray(x, np.float64)
  residual = ((x - np.asarray(x_hat, np.float64)) ** 2).sum()
  total = ((x - x.mean(0)) ** 2).sum()
  return float(1.0 - residual / total)


def save(d: Dictionary, path: os.PathLike | str) -> pathlib.Path:
  """Writes the interchange file atomically (float32 arrays, scalar k, scale)."""
  arrays = {name: np.asarray(getattr(d, name), np.float32) for name in ARRAYS}
  store.save_npz(path, {**arrays, "k": np.int64(d.k),
                        "input_scale": np.float32(d.input_scale)})
  return pathlib.Path(path)


# What dictionary.npz must hold: C channels, F features (named sizes agree).
FILE_SPEC = {
    "encoder": readers.Array(("C", "F")),
    "encoder_bias": readers.Array(("F",)),
    "decoder": readers.Array(("F", "C")),
    "decoder_bias": readers.Array(("C",)),
    "k": readers.Array(kinds=readers.INTEGER),
    "input_scale": readers.Array(kinds=readers.FLOAT),
}
FIX = ("train it again with experiments/dictionary.py --workdir=W (it writes "
       "W/dictionary.npz)")


def load(path: os.PathLike | str) -> Dictionary:
  """Reads ``dictionary.npz``, validated before use.

  Every array is checked (shapes ``[C, F]``, ``[F]``, ``[F, C]``, ``[C]`` with
  one ``C`` and one ``F``, float dtypes, finite values) before it is
  allocated, ``k`` must be one integer in ``1..F`` and ``input_scale`` one
  finite number above zero (:mod:`atlasjax.readers`).

  Raises:
    FileNotFoundError: no file at ``path``.
    atlasjax.readers.FileFormatError: anything else amiss, on one line.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"No dictionary at {path}; train one with "
                            "experiments/dictionary.py --workdir=W (it writes "
                            "W/dictionary.npz).")
  f, dims = readers.read_npz(path, FILE_SPEC, default=None, fix=FIX)
  k = readers.scalar(f, "k", path, FIX, minimum=1, integer=True)
  if k > dims["F"]:
    raise readers.refuse(path, f"k={k} is more than its {dims['F']} features",
                         FIX)
  scale = readers.scalar(f, "input_scale", path, FIX)
  if not scale > 0:
    raise readers.refuse(path, f"input_scale={scale} must be above zero", FIX)
  arrays = {name: jnp.asarray(f[name], jnp.float32) for name in ARRAYS}
  return Dictionary(**arrays, k=k, input_scale=scale)


def check_fits(d: Dictionary, model, layer: str) -> None:
  """Refuses (``ValueError``, one line) a dictionary that does not read
  ``layer``'s channels, before anything is computed with it."""
  depth = model.layer(layer).depth
  if d.depth != depth:
    raise ValueError(f"The dictionary reads {d.depth} channels; {layer} has "
                     f"{depth} (model {model.name}). Pass the layer and model "
                     "it was trained on.")


def decoder_cosines(a: Dictionary, b: Dictionary) -> np.ndarray:
  """``[F_a, F_b]`` cosine similarity of every pair of decoder rows."""
  return np.asarray(unit_rows(a.decoder) @ unit_rows(b.decoder).T)


def match(a: Dictionary, b: Dictionary) -> dict:
  """Two dictionaries' features paired by the Hungarian algorithm.

  The pairing maximises the summed decoder cosine (``scipy``'s
  ``linear_sum_assignment``), the measure of "Archetypal SAE" (Fel et al.
  2025) for how much a dictionary depends on its seed.

  Returns:
    A dict: ``pairs`` (``[F]``, the index into ``b`` of each feature of
    ``a``), ``cosines`` (``[F]``), ``mean_cosine``, ``median_cosine``,
    ``fraction_above_0.9`` and ``fraction_above_0.7``.
  """
  import scipy.optimize  # pylint: disable=g-import-not-at-top  # only here

  cos = decoder_cosines(a, b)
  rows, cols = scipy.optimize.linear_sum_assignment(cos, maximize=True)
  pairs = np.full(cos.shape[0], -1)
  pairs[rows] = cols
  matched = cos[rows, cols]
  return {"pairs": pairs.tolist(), "cosines": matched.tolist(),
          "mean_cosine": float(matched.mean()),
          "median_cosine": float(np.median(matched)),
          "fraction_above_0.9": float((matched > 0.9).mean()),
          "fraction_above_0.7": float((matched > 0.7).mean())}
