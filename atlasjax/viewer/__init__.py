"""Static, offline, zoomable browser viewer for activation atlases.

``write_viewer(workdir)`` turns an atlas work directory (``atlas.json`` and
the files it names) into ``<workdir>/index.html`` plus ``<workdir>/viewer/``:
open the page from disk or serve the folder with ``python -m http.server``.
Nothing is loaded from outside the work directory's files.

``screenshot(index_html, out_png)`` renders the page in headless Chromium
(Debian's ``chromium``; never downloaded) through the small DevTools-pipe
driver in :mod:`atlasjax.viewer.browser`.
"""

from __future__ import annotations

import os
import pathlib

from atlasjax.viewer.browser import Browser, BrowserError, find_chromium
from atlasjax.viewer.writer import AtlasFormatError, load_atlas, write_viewer

__all__ = ["write_viewer", "load_atlas", "screenshot", "AtlasFormatError",
           "Browser", "BrowserError", "find_chromium"]

READY_JS = ("document.getElementById('atlas-viewer').dataset.ready === '1' && "
            "document.getElementById('atlas-viewer').dataset.iconsPending === '0'")


def screenshot(index_html: str | os.PathLike, out_png: str | os.PathLike, *,
               width: int = 1280, height: int = 800, search: str | None = None,
               zoom: float | None = None, hover: tuple[int, int] | None = None,
               timeout: float = 60.0) -> pathlib.Path:
  """Saves a PNG of the viewer at ``index_html`` once its icons have loaded.

  Args:
    index_html: the page :func:`write_viewer` returned.
    out_png: where to write the screenshot.
    width, height: browser viewport in CSS px.
    search: optionally shade by this class name first.
    zoom: optionally zoom (factor about the centre) first.
    hover: optionally hover cell ``(x, y)`` of the drawn level first.
  """
  index_html = pathlib.Path(index_html).resolve()
  if not index_html.is_file():
    raise FileNotFoundError(f"viewer page not found: {index_html}")
  with Browser(width=width, height=height, timeout=timeout) as b:
    b.goto(index_html.as_uri(), wait_for=READY_JS, timeout=timeout)
    if zoom:
      b.evaluate(f"atlasViewer.zoomAt(innerWidth/2 - 160, innerHeight/2, {zoom})")
    if search:
      b.evaluate(f"atlasViewer.setSearch(atlasViewer.findClass({search!r}))")
      b.wait_for_js("document.getElementById('atlas-viewer').dataset.shaded "
                    "=== '1'", timeout)
    if hover:
      x, y = b.evaluate(f"atlasViewer.cellCenter({hover[0]}, {hover[1]})")
      b.mouse("mouseMoved", x, y)
    b.wait_for_js(READY_JS, timeout)
    b.evaluate("new Promise(r => requestAnimationFrame(() => "
               "requestAnimationFrame(r)))", await_promise=True)
    out_png = pathlib.Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    b.screenshot(out_png)
  return out_png
