r"""Frame times of the atlas viewer while zooming and panning an 80x80 atlas.

  python bench/viewer_bench.py                      # synthetic 20/40/80 atlas
  python bench/viewer_bench.py --workdir=DIR        # an existing work dir

Drives headless Chromium (Debian's `chromium`, through Playwright) and, inside
the page, animates
the view with requestAnimationFrame while the browser's performance clock
records the interval between frames and the time spent drawing each one.
Prints one JSON line per phase: {"phase", "level", "frames", "frame_ms_mean",
"frame_ms_p95", "frame_ms_max", "draw_ms_mean", "draw_ms_p95", "icons_cached"}.
Headless Chromium renders without a GPU here, so these are upper bounds.
"""

import json
import os
import pathlib
import shutil
import tempfile

from absl import app
from absl import flags
from playwright.sync_api import sync_playwright

from atlasjax import viewer
from atlasjax.viewer import synthetic

_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Existing work dir (default: synthetic 80x80).")
_FRAMES = flags.DEFINE_integer("frames", 180, "Frames per phase.")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 120_000

# One phase: animate for n frames with step(k) and time every frame.
_PHASE_JS = r"""
(async (kind, n) => {
  const v = window.atlasViewer, W = innerWidth - 320, H = innerHeight;
  const gaps = [], draws = [], start = v.frameTimes.length;
  let last = performance.now();
  for (let k = 0; k < n; k++) {
    if (kind === 'zoom_in') v.zoomAt(W / 2, H / 2, Math.pow(12, 1 / n));
    else if (kind === 'pan') v.panBy(6 * Math.cos(k / 20), 4 * Math.sin(k / 15));
    else if (kind === 'zoom_out') v.zoomAt(W / 2, H / 2, Math.pow(12, -1 / n));
    await new Promise(r => requestAnimationFrame(r));
    const now = performance.now(); gaps.push(now - last); last = now;
  }
  const d = v.frameTimes.slice(start);
  return {gaps, draws: d, level: v.state().level, icons: v.state().iconsCached};
})
"""


def _stats(xs):
  xs = sorted(xs) or [0.0]
  return (sum(xs) / len(xs), xs[min(len(xs) - 1, int(0.95 * len(xs)))], xs[-1])


def main(argv):
  del argv
  wd = _WORKDIR.value
  if wd is None:
    wd = pathlib.Path(tempfile.mkdtemp(prefix="viewer-bench-"))
    synthetic.make_workdir(wd, sizes=(20, 40, 80), icon_size=80,
                           n_points=60000, threshold=1, n_images=16)
  index = viewer.write_viewer(wd)
  ready = ("document.getElementById('atlas-viewer').dataset.ready === '1' && "
           "document.getElementById('atlas-viewer').dataset.iconsPending === '0'")
  chromium = (os.environ.get("ATLASJAX_CHROMIUM") or shutil.which("chromium")
              or "/usr/bin/chromium")
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto(index.resolve().as_uri())
    page.wait_for_function(ready)
    n80 = page.evaluate("ATLAS_DATA.layers[0].grids.slice(-1)[0].nCells")
    print(json.dumps({"phase": "setup", "cells_finest": n80,
                      "browser": browser.version}))
    for phase in ("zoom_in", "pan", "zoom_out"):
      r = page.evaluate(f"({_PHASE_JS})({phase!r}, {_FRAMES.value})")
      fm, fp, fx = _stats(r["gaps"])
      dm, dp, _ = _stats(r["draws"])
      print(json.dumps({
          "phase": phase, "level": r["level"], "frames": len(r["gaps"]),
          "frame_ms_mean": round(fm, 2), "frame_ms_p95": round(fp, 2),
          "frame_ms_max": round(fx, 2), "draw_ms_mean": round(dm, 2),
          "draw_ms_p95": round(dp, 2), "icons_cached": r["icons"]}))
    browser.close()
    print(json.dumps({"phase": "done", "console_errors": len(errors)}))

if __name__ == "__main__":
  app.run(main)
