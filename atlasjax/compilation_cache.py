"""JAX's persistent compilation cache, on by default for atlasjax.

A render program takes seconds to tens of seconds to compile and the same
script run again compiles exactly the same programs. JAX can keep compiled
executables on disk, keyed by the program, the compile options, the device and
the JAX version, so a second process loads them instead. atlasjax turns that
on when a model or the renderer is first imported, in the user's cache folder
(``$XDG_CACHE_HOME/atlasjax/jax``, else ``~/.cache/atlasjax/jax``):

* ``ATLASJAX_COMPILATION_CACHE=off`` (or ``0``, ``false``, ``no``) leaves it
  off; ``ATLASJAX_COMPILATION_CACHE=/some/dir`` moves it (the scripts'
  ``--compilation_cache`` flag sets the same);
* a cache folder the user already gave JAX (``jax_compilation_cache_dir``) is
  left as it is;
* :func:`enable` / :func:`disable` do the same from code.

The folder is bounded (:data:`MAX_BYTES`, least recently used entries go
first). Only programs that took at least :data:`MIN_COMPILE_SECONDS` to
compile are written, so small helper programs do not fill it.
"""

from __future__ import annotations

import os
import pathlib

import jax

ENV_VAR = "ATLASJAX_COMPILATION_CACHE"
OFF_VALUES = ("off", "0", "false", "no", "none")
# Sub-folder of the atlasjax user cache (atlasjax.data.cache_dir's root).
SUBDIR = "jax"
# JAX's own default threshold: writing a program that compiles faster than
# this costs more than it saves.
MIN_COMPILE_SECONDS = 1.0
MAX_BYTES = 4 * 2 ** 30

# JAX's monitoring event for a program loaded from the persistent cache.
HIT_EVENT = "/jax/compilation_cache/cache_hits"

_configured = False
_hits = 0


def _count(event: str, **kwargs) -> None:
  del kwargs
  global _hits
  if event == HIT_EVENT:
    _hits += 1


jax.monitoring.register_event_listener(_count)


def hits() -> int:
  """Programs this process loaded from the persistent cache so far."""
  return _hits


def default_dir() -> pathlib.Path:
  """``$XDG_CACHE_HOME/atlasjax/jax`` or ``~/.cache/atlasjax/jax``."""
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return pathlib.Path(root) / "atlasjax" / SUBDIR


def enable(path: os.PathLike | str | None = None) -> pathlib.Path:
  """Turns the persistent cache on in ``path`` (default :func:`default_dir`)."""
  folder = pathlib.Path(path) if path is not None else default_dir()
  jax.config.update("jax_compilation_cache_dir", os.fspath(folder))
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    MIN_COMPILE_SECONDS)
  jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
  return folder


def disable() -> None:
  """Turns the persistent cache off (programs compile in every process)."""
  jax.config.update("jax_compilation_cache_dir", None)


def directory() -> pathlib.Path | None:
  """The folder compiled programs are kept in, or None when off."""
  folder = jax.config.jax_compilation_cache_dir
  return pathlib.Path(folder) if folder else None


def configure(setting: str | None = None) -> pathlib.Path | None:
  """Applies ``setting`` (default: the environment variable) once per process.

  ``None``/unset: on in :func:`default_dir` unless JAX already has a folder;
  an ``OFF_VALUES`` word: off; anything else: a folder. An explicit
  ``setting`` always applies (the scripts' flag); the environment is read
  only on the first call.
  """
  global _configured
  if setting is None:
    if _configured:
      return directory()
    _configured = True
    setting = os.environ.get(ENV_VAR)
    if not setting and jax.config.jax_compilation_cache_dir:
      return directory()   # the user's own choice
  if setting and setting.strip().lower() in OFF_VALUES:
    disable()
    return None
  return enable(setting or None)


__all__ = ["enable", "disable", "directory", "configure", "default_dir", "hits",
           "ENV_VAR", "OFF_VALUES", "MIN_COMPILE_SECONDS", "MAX_BYTES"]
