"""The progress abstraction: events, quiet off a terminal, forced bars, notes
as log records, and the experiment scripts' logging set-up."""

from __future__ import annotations

import logging
import os
import pathlib
import subprocess
import sys

from atlasjax import progress

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_capture_records_a_bar_and_notes(caplog):
  caplog.set_level(logging.INFO, logger=progress.LOGGER_NAME)
  with progress.capture() as events:
    with progress.bar(10, "work", unit="item", initial=4) as bar:
      bar.update(2)
      bar.update(4)
    progress.note("work: reused 4 items")
    progress.warn("work: skipped 1 item")
  assert [(e.kind, e.n) for e in events[:4]] == [
      ("start", 4), ("update", 6), ("update", 10), ("close", 10)]
  assert all(e.desc == "work" and e.total == 10 and e.unit == "item"
             for e in events[:4])
  assert [(e.kind, e.message) for e in events[4:]] == [
      ("note", "work: reused 4 items"), ("warning", "work: skipped 1 item")]
  records = [(r.levelno, r.getMessage()) for r in caplog.records
             if r.name == progress.LOGGER_NAME]
  assert records == [(logging.INFO, "work: reused 4 items"),
                     (logging.WARNING, "work: skipped 1 item")]


def test_capture_and_enabled_are_scoped():
  with progress.capture() as outer:
    with progress.capture() as inner:
      progress.note("a: both")
    progress.note("a: outer only")
  progress.note("a: nobody")
  assert [e.message for e in outer] == ["a: both", "a: outer only"]
  assert [e.message for e in inner] == ["a: both"]
  with progress.capture() as events:
    items = list(progress.iterate(["x", "y", "z"], desc="it"))
  assert items == ["x", "y", "z"]
  assert [e.n for e in events if e.kind == "update"] == [1, 2, 3]
  assert events[0].total == 3
  # An open bar (for code where a with block does not fit) closes once.
  with progress.capture() as events:
    b = progress.start(2, "open")
    b.update(2)
    b.close()
    b.close()
  assert [e.kind for e in events] == ["start", "update", "close"]


def test_bars_are_quiet_off_a_terminal_unless_forced(capsys):
  # Under pytest stderr is not a terminal: tqdm's disable=None keeps it quiet.
  with progress.bar(3, "quiet", unit="img") as bar:
    bar.update(3)
  assert capsys.readouterr().err == ""
  with progress.enabled(True):
    with progress.bar(3, "forced", unit="img") as bar:
      bar.update(3)
  err = capsys.readouterr().err
  assert "forced" in err and "3/3" in err and "img/s" in err
  with progress.enabled(False):
    with progress.bar(3, "off") as bar:
      bar.update(3)
  assert capsys.readouterr().err == ""


def test_scripts_keep_notes_and_drop_the_backend_probe(tmp_path):
  """A script that sets up logging like experiments/ do prints atlasjax's
  notes and none of jax's backend-probe lines (the TPU probe on a CPU host)."""
  script = tmp_path / "probe.py"
  script.write_text(
      "import sys\n"
      f"sys.path.insert(0, {str(REPO / 'experiments')!r})\n"
      "from absl import app\n"
      "import jax\n"
      "import script_setup\n"
      "from atlasjax import progress\n"
      "def main(argv):\n"
      "  script_setup.quiet_logging()\n"
      "  progress.note('probe: a note worth keeping')\n"
      "  jax.devices()\n"
      "  print('done')\n"
      "app.run(main)\n")
  env = dict(os.environ, PYTHONPATH=str(REPO))
  env.pop("JAX_PLATFORMS", None)
  out = subprocess.run([sys.executable, str(script)], capture_output=True,
                       text=True, env=env, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "probe: a note worth keeping" in out.stderr
  assert "xla_bridge" not in out.stderr and "backend" not in out.stderr, out.stderr
  assert out.stdout.strip() == "done"
  # Without the set-up the probe line is there (so the check above means something).
  bare = script.read_text().replace("  script_setup.quiet_logging()\n", "")
  script.write_text(bare)
  out = subprocess.run([sys.executable, str(script)], capture_output=True,
                       text=True, env=env, timeout=120)
  assert "Unable to initialize backend" in out.stderr, out.stderr[-2000:]
