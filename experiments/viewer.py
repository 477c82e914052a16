r"""(Re)writes the static atlas viewer for an existing work directory.

  python experiments/viewer.py --workdir=/path/to/atlas_workdir
  python experiments/viewer.py --workdir=DIR --screenshot=docs/viewer.png
  python experiments/viewer.py --workdir=/tmp/synth --synthetic \
      --screenshot=docs/viewer.png     # synthetic atlas (README picture)

Then open DIR/index.html in a browser, or `python -m http.server -d DIR`.
Prints a final JSON line {"index", "screenshot"}. --screenshot drives Debian's
`chromium` through Playwright (`pip install playwright`; never a browser
download; $ATLASJAX_CHROMIUM names another binary).
"""

import json
import os
import pathlib
import shutil
import sys

from absl import flags

import cli_base
from atlasjax import viewer
from atlasjax.viewer import synthetic

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder holding atlas.json.")
_SCREENSHOT = flags.DEFINE_string(
    "screenshot", None, "Also save a headless-Chromium PNG of the viewer here.")
_SYNTHETIC = flags.DEFINE_bool(
    "synthetic", False, "First write a synthetic atlas into --workdir.")
_SIZES = flags.DEFINE_list("sizes", ["20", "40", "80"],
                           "Grid sizes of the --synthetic atlas.")
_SEARCH = flags.DEFINE_string("search", None,
                              "Screenshot: shade by this class name.")
_ZOOM = flags.DEFINE_float("zoom", None, "Screenshot: zoom factor.")
_HOVER = flags.DEFINE_list("hover", None, "Screenshot: hover cell X,Y.")
_WIDTH = flags.DEFINE_integer("width", 1280, "Screenshot width (CSS px).")
_HEIGHT = flags.DEFINE_integer("height", 800, "Screenshot height (CSS px).")
flags.mark_flag_as_required("workdir")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
READY_JS = ("document.getElementById('atlas-viewer').dataset.ready === '1' && "
            "document.getElementById('atlas-viewer').dataset.iconsPending === '0'")
TIMEOUT_MS = 60_000


def screenshot(index, out_png, width, height, search=None, zoom=None,
               hover=None):
  """Saves a PNG of the viewer page once its icons have loaded."""
  try:
    from playwright.sync_api import sync_playwright
  except ImportError:
    sys.exit("--screenshot needs Playwright: pip install playwright "
             "(it drives the system chromium; no browser download).")
  chromium = (os.environ.get("ATLASJAX_CHROMIUM") or shutil.which("chromium")
              or shutil.which("chromium-browser"))
  if not chromium:
    sys.exit("--screenshot needs Chromium: apt-get install chromium, or set "
             "ATLASJAX_CHROMIUM to a Chromium binary.")
  out_png = pathlib.Path(out_png)
  out_png.parent.mkdir(parents=True, exist_ok=True)
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(pathlib.Path(index).resolve().as_uri())
    page.wait_for_function(READY_JS)
    if zoom:
      page.evaluate(f"atlasViewer.zoomAt(innerWidth/2 - 160, innerHeight/2, {zoom})")
    if search:
      page.locator("#av-search").fill(search)
      page.locator("#av-search").press("Enter")
    if hover:
      x, y = page.evaluate(f"atlasViewer.cellCenter({hover[0]}, {hover[1]})")
      page.mouse.move(x, y)
    page.wait_for_function(READY_JS)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => "
                  "requestAnimationFrame(r)))")
    page.screenshot(path=str(out_png))
    browser.close()
  return out_png


def main(argv):
  del argv
  if _SYNTHETIC.value:
    synthetic.make_workdir(_WORKDIR.value, sizes=[int(s) for s in _SIZES.value],
                           icon_size=48, n_points=20000,
                           layers=("mixed4c", "mixed5b"))
  index = viewer.write_viewer(_WORKDIR.value)
  shot = None
  if _SCREENSHOT.value:
    hover = tuple(int(v) for v in _HOVER.value) if _HOVER.value else None
    shot = str(screenshot(index, _SCREENSHOT.value, width=_WIDTH.value,
                          height=_HEIGHT.value, search=_SEARCH.value,
                          zoom=_ZOOM.value, hover=hover))
  print(json.dumps({"index": str(index), "screenshot": shot}))


if __name__ == "__main__":
  cli_base.run(main)
