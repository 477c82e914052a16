r"""The figures of docs/tutorials/your_own_objective.md, made by its own cells.

  nice -n 5 python bench/guide_figures.py            # 128 px, 512 steps

The page's cells marked ``# figure: NAME`` are not run by the docs build (each
would compile another GoogLeNet program). This script runs the page's code
cells in order in one namespace — with the page's ``SIZE, STEPS = 64, 32``
replaced by ``--size`` and ``--steps`` — up to the last figure cell, leaving
out the other cells that render (their pictures are the build's), and saves
each figure cell's value (its last line: a result, a ``display.Picture`` or
an image array) as ``docs/images/NAME``. Prints one JSON line per figure with
its seconds and the machine's load.
"""

import json
import pathlib
import re
import sys
import time
import types

from absl import app
from absl import flags
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position
from atlasjax import display  # pylint: disable=g-import-not-at-top,wrong-import-position
from atlasjax import workdir  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "tutorials" / "your_own_objective.md"
IMAGES = REPO / "docs" / "images"
SETTINGS_LINE = "SIZE, STEPS = 64, 32"
CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.M | re.S)
FIGURE = re.compile(r"^# figure: (\S+)$", re.M)
JPEG_QUALITY = 90

_SIZE = flags.DEFINE_integer("size", 128, "Render side of the figures.")
_STEPS = flags.DEFINE_integer("steps", 512, "Steps of the figures' renders.")


def cells(text: str) -> list[str]:
  """The page's code cells, their ``:tags:`` option lines removed."""
  return [re.sub(r"^:[a-z]+:.*\n", "", c) for c in CELL.findall(text)]


def main(argv):
  del argv
  text = PAGE.read_text()
  if SETTINGS_LINE not in text:
    raise SystemExit(f"error: {PAGE} no longer has the line {SETTINGS_LINE!r}")
  text = text.replace(SETTINGS_LINE, f"SIZE, STEPS = {_SIZE.value}, {_STEPS.value}")
  code = cells(text)
  last = max(i for i, c in enumerate(code) if FIGURE.search(c))
  page = types.ModuleType("guide_page")
  sys.modules[page.__name__] = page
  for i, cell in enumerate(code[:last + 1]):
    figure = FIGURE.search(cell)
    if not figure and "render.render(" in cell:
      continue
    start = time.perf_counter()
    exec(compile(cell, f"{PAGE.name} cell {i + 1}", "exec"), page.__dict__)  # pylint: disable=exec-used
    if figure:
      value = eval(cell.rstrip().splitlines()[-1], page.__dict__)  # pylint: disable=eval-used
      sheet = value.sheet if isinstance(value, display.Picture) else display.as_sheet(value)
      out = IMAGES / figure.group(1)
      workdir.save_image(out, Image.fromarray((sheet * 255 + 0.5).clip(0, 255).astype("uint8")),
                         quality=JPEG_QUALITY)
      print(json.dumps({"workload": "guide_figure", "figure": str(out.relative_to(REPO)),
                        "size": _SIZE.value, "steps": _STEPS.value,
                        "seconds": round(time.perf_counter() - start, 1),
                        "machine": machine.describe()}), flush=True)


if __name__ == "__main__":
  app.run(main)
