"""Toy model and judge for the quality suite's tests."""

import shutil

import pytest

import toy_model
from toy_judge import TOY_JUDGE


@pytest.fixture(scope="session")
def judge():
  return TOY_JUDGE, toy_model.toy_params()


@pytest.fixture(scope="session")
def eight_photos(tmp_path_factory, sample_dir):
  """The first eight sample photos (2 references and 2 trials per side)."""
  folder = tmp_path_factory.mktemp("eight")
  for path in sorted(sample_dir.glob("*.jpg"))[:8]:
    shutil.copy(path, folder / path.name)
  return folder


def _experiments_conftest():
  """tests/experiments/conftest.py, for its in-process ``run_script`` fixture."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  import pathlib  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "conftest.py"
  spec = importlib.util.spec_from_file_location("_quality_experiments_conftest", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


run_script = _experiments_conftest().run_script
