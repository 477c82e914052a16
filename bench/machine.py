"""A description of the machine, for benchmark JSON lines."""

import os
import pathlib
import platform

_ISAS = ("avx512f", "avx2", "avx", "sse4_2", "neon", "asimd")


def _cpuinfo() -> str:
  try:
    return pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    return ""


def cpu_model() -> str:
  for line in _cpuinfo().splitlines():
    if line.startswith("model name"):
      return line.split(":", 1)[1].strip()
  return platform.processor() or platform.machine()


def cpu_isa() -> str:
  """The widest SIMD instruction set the CPU reports."""
  flags = set(_cpuinfo().split())
  return next((isa for isa in _ISAS if isa in flags), "unknown")


def describe() -> dict:
  out = {"cpu": cpu_model(), "isa": cpu_isa(), "cores": os.cpu_count(),
         "python": platform.python_version()}
  try:
    import jax
    out["jax"] = jax.__version__
    out["backend"] = jax.default_backend()
    out["devices"] = [d.device_kind for d in jax.devices()][:1]
  except ImportError:
    pass
  try:
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
  except OSError:
    pass
  return out
