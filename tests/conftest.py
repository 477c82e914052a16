"""Shared fixtures: the real BVLC GoogLeNet (fails loudly without data) and a
tiny custom CNN that follows the same model protocol."""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import pytest

from atlasjax import data as data_lib
from atlasjax import models
from atlasjax.models import base

REPO = pathlib.Path(__file__).resolve().parents[1]
_LOCAL_DATA = REPO.parent / "shared" / "data"

if not os.environ.get(data_lib.ENV_VAR) and _LOCAL_DATA.is_dir():
  os.environ[data_lib.ENV_VAR] = str(_LOCAL_DATA)


@pytest.fixture(scope="session")
def data_root() -> pathlib.Path:
  root = os.environ.get(data_lib.ENV_VAR)
  if not root or not pathlib.Path(root).is_dir():
    raise data_lib.DataError(
        f"Tests need the reference data: set {data_lib.ENV_VAR}=../shared/data "
        "(CI does). Refusing to skip.")
  return pathlib.Path(root)


@pytest.fixture(scope="session")
def googlenet(data_root):
  """``(model, params)`` with the real verified weights."""
  return models.load(models.DEFAULT_MODEL, data_root)


@pytest.fixture(scope="session")
def sample_dir(data_root) -> pathlib.Path:
  return data_lib.sample_dir(data_root)


# ---------------------------------------------------------------------------
# A tiny custom CNN: proof that anything fitting the protocol works.

TOY_LAYERS = (
    base.Layer("conv1_pre_relu", 8, 2), base.Layer("conv1", 8, 2),
    base.Layer("conv2_pre_relu", 16, 4), base.Layer("conv2", 16, 4),
    base.Layer("logits", 10, 0),
)


def _toy_apply(params, images, layers=None):
  acts = {}
  wanted = None if layers is None else set(
      (layers,) if isinstance(layers, str) else layers)
  x = images * 2.0 - 1.0
  for name in ("conv1", "conv2"):
    x = jax.lax.conv_general_dilated(
        x, params[name]["kernel"], (2, 2), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC")) + params[name]["bias"]
    acts[name + "_pre_relu"] = x
    acts[name] = x = jax.nn.relu(x)
    if wanted is not None and wanted <= acts.keys():
      return {k: acts[k] for k in wanted}
  acts["logits"] = x.mean(axis=(1, 2)) @ params["head"]
  return acts if wanted is None else {k: acts[k] for k in wanted}


TOY_MODEL = base.Model(name="toy_cnn", apply=_toy_apply, layers=TOY_LAYERS,
                       input_size=32, min_size=8)


def toy_params(key=None):
  key = jax.random.PRNGKey(0) if key is None else key
  k1, k2, k3 = jax.random.split(key, 3)
  return {
      "conv1": {"kernel": jax.random.normal(k1, (3, 3, 3, 8)) * 0.5,
                "bias": jnp.full((8,), 0.1)},
      "conv2": {"kernel": jax.random.normal(k2, (3, 3, 8, 16)) * 0.2,
                "bias": jnp.full((16,), 0.1)},
      "head": jax.random.normal(k3, (16, 10)) * 0.3,
  }


@pytest.fixture(scope="session")
def toy():
  """``(model, params)`` for the tiny custom CNN."""
  return TOY_MODEL, toy_params()
