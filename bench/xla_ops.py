"""XLA's own per-operation profile of a compiled program (no flags; shared).

``op_times(compiled, args)`` runs ``compiled(*args)`` under
``jax.profiler.trace`` and reads the trace back with
``jax.profiler.ProfileData``: every HLO instruction that XLA executes (on
XLA:CPU one thunk per fusion, convolution, custom call, ...) is an event
named after the instruction. Each instruction's ``metadata`` in the compiled
HLO text gives the JAX operation it came from (``op_name``: the name stack,
``transpose(jvp(...))`` marking backward passes) and its source file and line,
so XLA's timings can be read in terms of the program that was written.

Durations are summed per instruction and divided by the number of calls.
Independent instructions may run concurrently on XLA:CPU, so the sum over
instructions can exceed the wall time; shares are of that sum.
"""

import collections
import dataclasses
import glob
import re
import tempfile
import time

import jax

# Events that are containers or waits, not HLO instructions.
_NOT_OPS = ("ThunkExecutor", "SlinkyThreadPool", "ThreadpoolListener", "end: ")
_INSTR = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*)$")
_META = re.compile(r'metadata=\{([^}]*)\}')


@dataclasses.dataclass
class Op:
  name: str                 # HLO instruction name (the event name).
  ms: float                 # Milliseconds per call, summed over executions.
  count: float              # Executions per call (loop bodies run many times).
  op_name: str              # JAX name stack from the metadata ('' if none).
  source: str               # "file.py:line" from the metadata ('' if none).
  hlo: str                  # The instruction's text (shape, opcode, ...).


def _metadata(hlo_text: str) -> dict[str, tuple[str, str, str]]:
  out = {}
  for line in hlo_text.splitlines():
    m = _INSTR.match(line)
    if not m:
      continue
    meta = _META.search(line)
    op_name = source = ""
    if meta:
      o = re.search(r'op_name="([^"]*)"', meta.group(1))
      s = re.search(r'source_file="([^"]*)" source_line=(\d+)', meta.group(1))
      op_name = o.group(1) if o else ""
      source = f"{s.group(1)}:{s.group(2)}" if s else ""
    out[m.group(1)] = (op_name, source, m.group(2)[:200])
  return out


def op_times(compiled, args, calls: int = 2) -> tuple[list[Op], float]:
  """``(ops sorted by time, wall seconds per call)`` of ``compiled(*args)``."""
  jax.block_until_ready(compiled(*args))          # warm: allocations, caches
  meta = _metadata(compiled.as_text())
  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d)
    t = time.perf_counter()
    for _ in range(calls):
      jax.block_until_ready(compiled(*args))
    wall = (time.perf_counter() - t) / calls
    jax.profiler.stop_trace()
    (path,) = glob.glob(f"{d}/**/*.xplane.pb", recursive=True)
    data = jax.profiler.ProfileData.from_file(path)
    ms, count = collections.Counter(), collections.Counter()
    for plane in data.planes:
      for line in plane.lines:
        for e in line.events:
          if e.name in meta and not e.name.startswith(_NOT_OPS):
            ms[e.name] += e.duration_ns / 1e6 / calls
            count[e.name] += 1 / calls
  ops = [Op(n, v, count[n], *meta[n]) for n, v in ms.items()]
  return sorted(ops, key=lambda o: -o.ms), wall
