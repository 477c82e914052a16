"""Readers of the files atlasjax loads: one per file kind (issue 29).

Every reader checks structure, shapes, dtypes, finiteness and sizes before a
value is used, and refuses a bad file with :class:`FileFormatError`: one line
naming the file, what is wrong and the fix. Scripts print it as one
``error:`` line (it is a ``ValueError``).
"""

from __future__ import annotations


class FileFormatError(ValueError):
  """A file that is not what it should be; the message names the file, the
  problem and the fix, on one line."""


__all__ = ["FileFormatError"]
