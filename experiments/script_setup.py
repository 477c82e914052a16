"""Logging set-up shared by the experiment scripts (never done by the library).

The library reports through :mod:`atlasjax.progress`: tqdm bars on a terminal
and one-line notes as INFO records of the ``atlasjax`` logger. A script wants
those notes, but not other libraries' INFO chatter: jax logs
``Unable to initialize backend 'tpu'`` (``jax._src.xla_bridge`` probing for
backends) on every machine without a TPU, and orbax logs every checkpoint it
writes.
"""

import logging

from absl import logging as absl_logging

from atlasjax import progress

# Loggers whose INFO records are noise in a script's output.
QUIET_LOGGERS = ("jax._src.xla_bridge",)


def quiet_logging() -> None:
  """Keeps atlasjax's notes (INFO) and everything else's warnings and errors."""
  absl_logging.set_verbosity(absl_logging.WARNING)
  logging.getLogger(progress.LOGGER_NAME).setLevel(logging.INFO)
  for name in QUIET_LOGGERS:
    logging.getLogger(name).setLevel(logging.WARNING)
