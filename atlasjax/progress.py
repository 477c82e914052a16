"""Progress reporting: one small abstraction over ``tqdm``.

Every long step of the library (collecting activations, laying out chunks,
rendering icon chunks, downloading, evaluating) reports through two calls
instead of a ``log=print`` argument threaded through every ``run()``::

  with progress.bar(total=len(paths), desc="collect", unit="image") as bar:
    for batch in batches:
      ...
      bar.update(len(batch))
  progress.note("collect: skipped 3 unreadable image(s); see manifest.json")

* A **bar** is a ``tqdm`` bar on stderr (count, rate, ETA). Like tqdm's
  ``disable=None`` it is shown only when stderr is a terminal, so CI logs and
  redirected runs stay short; ``with progress.enabled(True):`` (or ``False``)
  forces it on or off for everything inside the block.
* A **note** is one line worth keeping (what was reused, skipped or written):
  an INFO record of the ``atlasjax`` logger (:func:`warn`: a WARNING record).
  absl scripts print them; elsewhere INFO appears once ``logging`` is
  configured, WARNING always.
* ``with progress.capture() as events:`` records every bar start, update and
  close and every note as an :class:`Event`, which is how tests (or a GUI)
  observe progress without parsing text.

``enabled`` and ``capture`` are context-scoped (``contextvars``): nothing is
changed at import and nothing outlives the ``with`` block.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
from typing import Iterable, Iterator, TypeVar

import tqdm

LOGGER_NAME = "atlasjax"
# tqdm's default refresh interval is 0.1 s; a slower one keeps bars cheap when
# updates arrive from tight loops (icon chunks, download threads).
MIN_INTERVAL_S = 0.5

T = TypeVar("T")

_ENABLED: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "atlasjax_progress_enabled", default=None)
_SINKS: contextvars.ContextVar[tuple[list, ...]] = contextvars.ContextVar(
    "atlasjax_progress_sinks", default=())


@dataclasses.dataclass(frozen=True)
class Event:
  """One progress event: "start", "update", "close", "note" or "warning"."""
  kind: str
  desc: str
  n: int = 0                  # units done so far (bars)
  total: int | None = None    # units expected, when known (bars)
  unit: str = ""
  message: str = ""           # the text of a note


def _emit(event: Event) -> None:
  for sink in _SINKS.get():
    sink.append(event)


@contextlib.contextmanager
def capture() -> Iterator[list[Event]]:
  """Collects the events reported inside the block into a list."""
  events: list[Event] = []
  token = _SINKS.set(_SINKS.get() + (events,))
  try:
    yield events
  finally:
    _SINKS.reset(token)


@contextlib.contextmanager
def enabled(on: bool | None) -> Iterator[None]:
  """Forces bars on (True) or off (False) inside the block; None: on a TTY."""
  token = _ENABLED.set(on)
  try:
    yield
  finally:
    _ENABLED.reset(token)


def note(message: str) -> None:
  """Reports one line worth keeping (an INFO record of the atlasjax logger)."""
  _emit(Event("note", desc=message.split(":", 1)[0], message=message))
  logging.getLogger(LOGGER_NAME).info(message)


def warn(message: str) -> None:
  """Reports something the user should look at (a WARNING record)."""
  _emit(Event("warning", desc=message.split(":", 1)[0], message=message))
  logging.getLogger(LOGGER_NAME).warning(message)


class Bar:
  """A counter with a tqdm bar; use through :func:`bar`."""

  def __init__(self, total: int | None, desc: str, unit: str, initial: int):
    self.desc, self.unit, self.total, self.n = desc, unit, total, initial
    self.closed = False
    on = _ENABLED.get()
    # disable=None is tqdm's "only on a terminal".
    self._tqdm = tqdm.tqdm(total=total, desc=desc, unit=unit, initial=initial,
                           disable=None if on is None else not on,
                           mininterval=MIN_INTERVAL_S, dynamic_ncols=True,
                           leave=True)
    self._emit("start")

  def _emit(self, kind: str) -> None:
    _emit(Event(kind, self.desc, self.n, self.total, self.unit))

  def update(self, n: int = 1) -> None:
    """Marks ``n`` more units done."""
    self.n += n
    self._tqdm.update(n)
    self._emit("update")

  def set_postfix(self, text: str) -> None:
    """Shows a short status after the counts (e.g. the current shard)."""
    self._tqdm.set_postfix_str(text, refresh=False)

  def close(self) -> None:
    """Closes the bar once (later calls do nothing)."""
    if not self.closed:
      self.closed = True
      self._tqdm.close()
      self._emit("close")


@contextlib.contextmanager
def bar(total: int | None = None, desc: str = "", unit: str = "it",
        initial: int = 0) -> Iterator[Bar]:
  """A progress bar of ``total`` units, closed when the block ends.

  ``initial`` counts units already done before this run (a resumed job), so the
  rate and ETA cover only the work still to do.
  """
  b = Bar(total, desc, unit, initial)
  try:
    yield b
  finally:
    b.close()


def start(total: int | None = None, desc: str = "", unit: str = "it",
          initial: int = 0) -> Bar:
  """An open bar for code where a ``with`` block does not fit; the caller
  closes it (an unclosed bar is closed when it is garbage-collected)."""
  return Bar(total, desc, unit, initial)


def iterate(items: Iterable[T], total: int | None = None, desc: str = "",
            unit: str = "it") -> Iterator[T]:
  """Yields ``items`` while advancing a bar by one per item."""
  if total is None and hasattr(items, "__len__"):
    total = len(items)  # type: ignore[arg-type]
  with bar(total, desc, unit) as b:
    for item in items:
      yield item
      b.update(1)
