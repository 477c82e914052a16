"""ImageNet class names and WordNet ids, in logit order.

``Labels`` is plain data built from ``synset_words.txt``; it looks classes up
by index, WordNet id (``n01440764``) or name (any comma-separated synonym,
case-insensitive, spaces or underscores).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import re

from atlasjax import data as data_lib


class UnknownClassError(KeyError):
  """A class name, index or WordNet id that is not among the labels."""

  def __str__(self) -> str:
    return str(self.args[0])


def _normalise(name: str) -> str:
  return re.sub(r"[\s_]+", " ", name.strip().lower())


@dataclasses.dataclass(frozen=True)
class Labels:
  wnids: tuple[str, ...]
  names: tuple[str, ...]        # full synonym lists, e.g. "tench, Tinca tinca"

  def __len__(self) -> int:
    return len(self.wnids)

  def short_name(self, index: int) -> str:
    """The first synonym, e.g. ``"tench"``."""
    return self.names[index].split(",")[0].strip()

  @functools.cached_property
  def _by_wnid(self) -> dict[str, int]:
    return {w: i for i, w in enumerate(self.wnids)}

  @functools.cached_property
  def _by_name(self) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, names in enumerate(self.names):
      for synonym in names.split(","):
        out.setdefault(_normalise(synonym), i)
    return out

  def index_of_wnid(self, wnid: str) -> int:
    """Logit index of a WordNet id; :class:`UnknownClassError` if there is none."""
    try:
      return self._by_wnid[wnid]
    except KeyError:
      raise UnknownClassError(f"Unknown WordNet id {wnid!r}.") from None

  def lookup(self, query: str | int) -> int:
    """Class index from an index, a WordNet id or a class name."""
    if isinstance(query, int) or (isinstance(query, str) and query.isdigit()):
      index = int(query)
      if not 0 <= index < len(self):
        raise UnknownClassError(f"Class index {index} outside 0..{len(self) - 1}.")
      return index
    if query in self._by_wnid:
      return self._by_wnid[query]
    key = _normalise(query)
    if key in self._by_name:
      return self._by_name[key]
    close = [self.short_name(i) for n, i in self._by_name.items() if key in n][:8]
    hint = f" Did you mean one of: {', '.join(close)}?" if close else ""
    raise UnknownClassError(f"Unknown class {query!r}.{hint}")


def parse_synset_words(text: str) -> Labels:
  """:class:`Labels` from ``synset_words.txt`` text (``<wnid> <names>`` per line)."""
  wnids, names = [], []
  for line in text.splitlines():
    if line.strip():
      wnid, name = line.strip().split(" ", 1)
      wnids.append(wnid)
      names.append(name)
  return Labels(tuple(wnids), tuple(names))


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> Labels:
  return parse_synset_words(pathlib.Path(path).read_text())


def load(data: os.PathLike | str | None = None) -> Labels:
  """The 1000 ImageNet classes of the BVLC GoogLeNet."""
  folder = data_lib.googlenet_dir(data)
  path = folder / "synset_words.txt"
  if not path.is_file():
    raise data_lib.DataError(f"{path} is missing; copy synset_words.txt there.")
  return _load_cached(str(path))


WNID_PATTERN = re.compile(r"(n\d{8})")


def wnid_from_filename(name: str) -> str | None:
  """The WordNet id a ``<wnid>_…`` file name starts with, if any."""
  match = WNID_PATTERN.match(os.path.basename(name))
  return match.group(1) if match else None
