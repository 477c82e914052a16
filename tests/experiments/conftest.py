"""Runs experiment scripts in-process: flags parsed, ``main`` guarded.

A subprocess per case would cost an interpreter and a JAX import each (~5 s);
instead each script module is imported fresh, its flags parsed with absl as
``app.run`` would, and its guarded ``main`` called. Afterwards the flags the
script (and its helper modules) defined are removed again, so the next script
can define flags of the same names.
"""

import contextlib
import importlib.util
import pathlib
import shutil
import sys

from absl import flags
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
# Helper modules the scripts import from experiments/ (they define flags, so
# they are re-imported for every script).
HELPERS = ("cli", "cli_base", "atlas_flags", "script_setup", "configs",
           "configs.atlas")


@contextlib.contextmanager
def _script(name: str):
  sys.path.insert(0, str(EXPERIMENTS))
  before = set(flags.FLAGS)
  try:
    spec = importlib.util.spec_from_file_location(f"_experiment_{name}",
                                                  EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
  finally:
    for flag in set(flags.FLAGS) - before:
      if flag in flags.FLAGS:
        delattr(flags.FLAGS, flag)
    for helper in HELPERS:
      sys.modules.pop(helper, None)
    sys.path.remove(str(EXPERIMENTS))


class Result:

  def __init__(self, code: int, out: str, err: str):
    self.code, self.out, self.err = code, out, err

  @property
  def error_lines(self) -> list[str]:
    return [l for l in self.err.splitlines() if l.startswith("error:")]

  def __repr__(self):
    return f"Result(code={self.code}, out={self.out[-500:]!r}, err={self.err[-800:]!r})"


@pytest.fixture
def run_script(capsys):
  """``run_script(name, *flags) -> Result`` (exit code, stdout, stderr)."""
  def run(name: str, *argv: str) -> Result:
    capsys.readouterr()
    with _script(name) as module:
      import cli_base  # pylint: disable=import-outside-toplevel  # the script's
      code = 0
      try:
        rest = cli_base.parse([name, *argv])
        cli_base.guard(module.main)(rest)
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
  return run


@pytest.fixture(scope="module")
def four_photos(tmp_path_factory, sample_dir):
  """A folder with the first four sample photos (small script runs)."""
  folder = tmp_path_factory.mktemp("four")
  for path in sorted(sample_dir.glob("*.jpg"))[:4]:
    shutil.copy(path, folder / path.name)
  return folder
