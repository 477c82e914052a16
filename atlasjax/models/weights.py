"""Loading the published per-tensor raw weights into a params pytree.

Each tensor of the BVLC caffemodel is a headerless little-endian float32 file:
``weights/<block>/<conv>_filter.bin`` with row-major shape
``(out, kernel_h, kernel_w, in)`` and ``<conv>_bias.bin`` of shape ``(out,)``;
the classifier filter is ``(classes, features)``. We transpose to HWIO kernels
and a ``(features, classes)`` matrix. Files are verified against ``SHA256SUMS``
by :func:`atlasjax.data.googlenet_dir` before they are read.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax import data as data_lib
from atlasjax.models import inception_v1

_RAW_DTYPE = np.dtype("<f4")


def _read(path, shape):
  values = np.fromfile(path, dtype=_RAW_DTYPE)
  if values.size != math.prod(shape):
    raise data_lib.DataError(
        f"{path} holds {values.size} floats, expected {math.prod(shape)} "
        f"for shape {shape}; the file does not belong to this model.")
  return values.reshape(shape)


def load_raw(folder: os.PathLike, spec=inception_v1.BVLC_GOOGLENET) -> dict:
  """Reads the raw tensors of ``spec`` from a verified folder into numpy arrays."""
  folder = os.fspath(folder)
  shapes = inception_v1.param_shapes(spec)

  def load_conv(source, expect):
    kh, kw, cin, cout = expect["kernel"]
    stem = os.path.join(folder, "weights", source)
    kernel = _read(stem + "_filter.bin", (cout, kh, kw, cin)).transpose(1, 2, 3, 0)
    bias = _read(stem + "_bias.bin", (cout,))
    return {"kernel": kernel, "bias": bias}

  params = {}
  for source, entry in shapes.items():
    if source == spec.classifier:
      features, classes = entry["kernel"]
      stem = os.path.join(folder, "weights", source)
      params[source] = {
          "kernel": _read(stem + "_filter.bin", (classes, features)).T,
          "bias": _read(stem + "_bias.bin", (classes,))}
    elif "kernel" in entry:
      params[source] = load_conv(source, entry)
    else:
      params[source] = {branch: load_conv(f"{source}/{branch}", e)
                        for branch, e in entry.items()}
  return params


def load_params(data: os.PathLike | str | None = None,
                spec=inception_v1.BVLC_GOOGLENET) -> dict:
  """Verified BVLC GoogLeNet parameters as a pytree of float32 device arrays."""
  folder = data_lib.googlenet_dir(data)
  raw = load_raw(folder, spec)
  return jax.tree_util.tree_map(lambda a: jnp.asarray(np.ascontiguousarray(a)), raw)
