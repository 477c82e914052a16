"""One-line errors for the experiment scripts, with no heavy imports.

``run(main)`` replaces ``app.run(main)``: flags that do not parse, and the
errors that mean "the input is wrong" raised while ``main`` runs, end in ONE
line on stderr, ``error: <message>``, and exit status 2 instead of a
traceback. Nothing written before the error is removed. Set
``ATLASJAX_TRACEBACK=1`` to see the traceback instead (for debugging the
library itself). :mod:`cli` adds the flags every model-using script shares;
this module is what the light scripts (the viewer) need.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile

from absl import app
from absl import flags

import script_setup

# Exit status for bad input (absl's own usage errors exit 1; 2 is the shell's
# convention for misuse, as argparse uses).
EXIT_BAD_INPUT = 2
TRACEBACK_ENV = "ATLASJAX_TRACEBACK"
# Errors that mean the input is wrong. The library's own error types derive
# from these (UnknownLayerError is a KeyError, CollectError a RuntimeError, …);
# a bare KeyError or RuntimeError from elsewhere is a bug and keeps its
# traceback.
INPUT_ERRORS = (app.UsageError, ValueError, OSError)
LIBRARY_ERRORS = (KeyError, RuntimeError)
LIBRARY_PACKAGE = "atlasjax"


def is_input_error(error: BaseException) -> bool:
  if isinstance(error, INPUT_ERRORS):
    return True
  module = type(error).__module__ or ""
  return (isinstance(error, LIBRARY_ERRORS)
          and module.split(".")[0] == LIBRARY_PACKAGE)


def fail(message: str) -> None:
  """Prints ``error: message`` (one line) and exits with EXIT_BAD_INPUT."""
  line = " ".join(str(message).split())  # one line, whatever the message
  print(f"error: {line}", file=sys.stderr)
  sys.exit(EXIT_BAD_INPUT)


def parse(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag reported as one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{e} (see --helpfull)")


def guard(main):
  """``main`` with input errors turned into one line and exit status 2."""
  def wrapped(argv):
    script_setup.quiet_logging()   # before JAX probes for backends
    try:
      return main(argv)
    except Exception as e:  # pylint: disable=broad-except
      if not is_input_error(e) or os.environ.get(TRACEBACK_ENV):
        raise
      fail(str(e) or type(e).__name__)
  return wrapped


def run(main) -> None:
  """``app.run(main)`` with one-line errors (see the module docstring)."""
  app.run(guard(main), flags_parser=parse)


def output_dir(path: str | os.PathLike, flag: str = "--out") -> pathlib.Path:
  """Creates ``path`` if needed and checks that it is a writable folder.

  Called before any work, so a wrong folder costs nothing; existing contents
  are left alone.
  """
  folder = pathlib.Path(path)
  if folder.exists() and not folder.is_dir():
    raise ValueError(f"{flag}={path} is a file, not a folder; pass a folder "
                     "path (it is created if missing).")
  try:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
      pass
  except OSError as e:
    raise ValueError(f"Cannot write to {flag}={path} ({e.strerror or e}); pass "
                     "a folder you can write to.") from None
  return folder
