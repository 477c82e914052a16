"""Loading the published per-tensor raw weights into a params pytree.

Each tensor of the BVLC caffemodel is a headerless little-endian float32 file:
``weights/<block>/<conv>_filter.bin`` with row-major shape
``(out, kernel_h, kernel_w, in)`` and ``<conv>_bias.bin`` of shape ``(out,)``;
the classifier filter is ``(classes, features)``. We transpose to HWIO kernels
and a ``(features, classes)`` matrix. Files are verified against ``SHA256SUMS``
by :func:`atlasjax.data.googlenet_dir` before they are read.

:func:`load_raw` keeps the BVLC (Caffe) names; :func:`to_variables` converts
them into the Flax variables tree of
:class:`~atlasjax.models.inception_v1.InceptionV1`, whose scopes carry Lucid's
names (``conv1/7x7_s2`` → ``conv2d0``, ``inception_3a/3x3_reduce`` →
``mixed3a/3x3_bottleneck``, ``loss3/classifier`` → ``logits``).
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


def param_shapes(spec=inception_v1.BVLC_GOOGLENET) -> dict:
  """Shape of every BVLC tensor, keyed by BVLC (Caffe) names."""
  shapes: dict[str, dict] = {}
  depth = 3
  for op in spec.ops:
    if isinstance(op, inception_v1.Conv):
      shapes[op.source] = {"kernel": (op.kernel, op.kernel, depth, op.features),
                           "bias": (op.features,)}
      depth = op.features
    elif isinstance(op, inception_v1.Inception):
      block = {}
      for branch, k, cin, cout in (
          ("1x1", 1, depth, op.c1x1), ("3x3_reduce", 1, depth, op.c3x3_reduce),
          ("3x3", 3, op.c3x3_reduce, op.c3x3),
          ("5x5_reduce", 1, depth, op.c5x5_reduce),
          ("5x5", 5, op.c5x5_reduce, op.c5x5),
          ("pool_proj", 1, depth, op.pool_proj)):
        block[branch] = {"kernel": (k, k, cin, cout), "bias": (cout,)}
      shapes[op.source] = block
      depth = op.depth
  shapes[spec.classifier] = {"kernel": (depth, spec.num_classes),
                             "bias": (spec.num_classes,)}
  return shapes


def load_raw(folder: os.PathLike, spec=inception_v1.BVLC_GOOGLENET) -> dict:
  """Reads the raw tensors of ``spec`` from a verified folder into numpy arrays."""
  folder = os.fspath(folder)
  shapes = param_shapes(spec)

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


def to_variables(raw: dict, spec=inception_v1.BVLC_GOOGLENET) -> dict:
  """BVLC-named tensors (:func:`load_raw`) → ``{"params": {Lucid scopes}}``."""
  params = {}
  for op in spec.ops:
    if isinstance(op, inception_v1.Conv):
      params[op.name] = raw[op.source]
    elif isinstance(op, inception_v1.Inception):
      params[op.name] = {lucid: raw[op.source][bvlc] for lucid, bvlc
                         in inception_v1.BRANCH_SOURCES.items()}
  params[inception_v1.LOGITS] = raw[spec.classifier]
  return {"params": params}


def load_params(data: os.PathLike | str | None = None,
                spec=inception_v1.BVLC_GOOGLENET) -> dict:
  """Verified BVLC GoogLeNet weights as Flax variables of float32 device arrays."""
  folder = data_lib.googlenet_dir(data)
  variables = to_variables(load_raw(folder, spec), spec)
  return jax.tree_util.tree_map(
      lambda a: jnp.asarray(np.ascontiguousarray(a)), variables)
