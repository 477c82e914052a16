"""A digest of a compiled XLA program that ignores names and parameter order.

Used to show that two implementations compile to the same program (so they
cost the same by construction): ``tests/models/test_flax_module.py`` and
``bench/flax_port_bench.py``.
"""

import hashlib
import re


def program_digest(compiled) -> str:
  """Digest of the optimized HLO instructions, up to names and parameter order.

  Debug tables (stack frames, file names) and metadata are dropped; parameters
  are numbered by pytree order, which differs between params trees with other
  key names, so instruction lines are compared as a sorted multiset.
  """
  lines = []
  for line in compiled.as_text().splitlines():
    if "=" not in line or "%" not in line:
      continue
    line = re.sub(r", metadata=\{[^}]*\}", "", line)
    line = re.sub(r"%[\w.\-]+", "%v", line)
    lines.append(re.sub(r"parameter\(\d+\)", "parameter(N)", line.strip()))
  return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]
