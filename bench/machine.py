"""A one-line description of the machine, for benchmark JSON lines."""

import os
import platform


def describe() -> dict:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  out = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
  try:
    import jax
    out["jax"] = jax.__version__
    out["backend"] = jax.default_backend()
    out["devices"] = [d.device_kind for d in jax.devices()][:1]
  except Exception:  # pylint: disable=broad-except
    pass
  try:
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
  except OSError:
    pass
  return out
