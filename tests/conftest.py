"""Shared fixtures: the real BVLC GoogLeNet (fails loudly without data) and a
tiny custom CNN that follows the same model protocol."""

from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np
import pytest

import toy_model

# One persistent compilation cache per test run, shared by the workers and
# the scripts they start (a program compiled in one is loaded by the others;
# nothing from an earlier run is reused). Set before atlasjax reads it.
os.environ.setdefault("ATLASJAX_COMPILATION_CACHE",
                      tempfile.mkdtemp(prefix="atlasjax-test-xla-"))

from atlasjax import data as data_lib
from atlasjax import models

REPO = pathlib.Path(__file__).resolve().parents[1]
_LOCAL_DATA = REPO.parent / "shared" / "data"

if not os.environ.get(data_lib.ENV_VAR) and _LOCAL_DATA.is_dir():
  os.environ[data_lib.ENV_VAR] = str(_LOCAL_DATA)
if os.environ.get(data_lib.ENV_VAR):
  # Absolute, so that paths built from it survive a chdir or a symlink.
  os.environ[data_lib.ENV_VAR] = os.path.abspath(os.environ[data_lib.ENV_VAR])


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


@pytest.fixture(scope="session")
def toy():
  """``(model, params)`` for the tiny custom CNN of ``tests/toy_model.py``."""
  return toy_model.TOY_MODEL, toy_model.toy_params()


class LinearUmap:
  """A deterministic stand-in for umap.UMAP: the first two coordinates (no
  numba compile; the layout's own numerics are tested in tests/atlas)."""

  def __init__(self, **kwargs):
    del kwargs

  def fit_transform(self, x):
    return np.asarray(x)[:, :2].astype(np.float32)


@pytest.fixture
def linear_umap(monkeypatch):
  """Lays out with :class:`LinearUmap` instead of UMAP for this test."""
  from atlasjax.atlas import layout  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(layout, "_reducer", lambda *a, **k: LinearUmap())
