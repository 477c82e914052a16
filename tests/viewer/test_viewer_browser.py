"""Drives the static viewer in headless Chromium (Debian's `chromium`).

Fails -- never skips -- when no Chromium is installed: the browser is part of
the test environment (.ci/run installs it).
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import pathlib
import threading

import numpy as np
import pytest
from PIL import Image

from atlasjax import viewer
from atlasjax.viewer import synthetic

ROOT_JS = "document.getElementById('atlas-viewer').dataset"
READY = f"{ROOT_JS}.ready === '1' && {ROOT_JS}.iconsPending === '0'"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  wd = synthetic.make_workdir(tmp_path_factory.mktemp("atlas"), sizes=(20, 40),
                              icon_size=24, n_points=4000,
                              layers=("mixed4c", "mixed5b"), n_images=12)
  viewer.write_viewer(wd)
  return wd


@pytest.fixture(scope="module")
def browser():
  try:
    b = viewer.Browser(width=1100, height=760)
  except viewer.BrowserError as e:
    pytest.fail(f"The viewer tests need headless Chromium: {e}", pytrace=False)
  yield b
  b.close()


@pytest.fixture(scope="module")
def server(workdir):
  """A `python -m http.server`-style static server on 127.0.0.1 only."""
  handler = functools.partial(_QuietHandler, directory=str(workdir))
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=httpd.serve_forever,
                            kwargs={"poll_interval": 0.1}, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
  httpd.shutdown()
  httpd.server_close()
  thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):
    pass


@pytest.fixture(params=["file", "http"])
def page(request, browser, workdir):
  """Loads the viewer fresh (file:// or local http) and checks, after the
  test, that nothing went to the console and nothing left the machine."""
  if request.param == "file":
    url = (workdir / "index.html").resolve().as_uri()
  else:
    url = request.getfixturevalue("server")
  n_err, n_req = len(browser.console_errors), len(browser.requests)
  browser.goto(url, wait_for=READY, timeout=30)
  assert browser.evaluate(f"{ROOT_JS}.level") == "20"
  yield browser
  errors = browser.console_errors[n_err:]
  assert not errors, f"console errors: {errors}"
  urls = browser.requests[n_req:]
  assert urls, "no request recorded"
  external = [u for u in urls if not u.startswith(
      ("file://", "http://127.0.0.1:", "data:"))]
  assert not external, f"external requests: {external}"


def _atlas(workdir, size):
  spec = json.loads((workdir / "atlas.json").read_text())
  grid = next(g for g in spec["grids"] if g["size"] == size)
  return grid, np.load(workdir / grid["attributions"]).astype(np.float32)


def _shot(b) -> np.ndarray:
  b.evaluate("new Promise(r => requestAnimationFrame(() => "
             "requestAnimationFrame(r)))", await_promise=True)
  return np.asarray(Image.open(io.BytesIO(b.screenshot())).convert("RGB"),
                    np.float32)


def _wait_level(b, level):
  b.wait_for_js(f"{ROOT_JS}.level === '{level}'", timeout=10)


def test_loads_and_screenshot_is_not_blank(page, tmp_path):
  img = _shot(page)
  assert img.std() > 20, "screenshot looks blank"
  colourful = (img.max(-1) - img.min(-1)) > 60
  assert colourful.mean() > 0.05, "icons were not drawn"
  label = page.evaluate("document.getElementById('av-level-label').textContent")
  assert "20×20" in label


def test_wheel_and_keyboard_zoom_change_grid_level(page):
  page.wheel(450, 380, -600)  # zoom in ~2.5x around the atlas
  _wait_level(page, 40)
  assert "40×40" in page.evaluate(
      "document.getElementById('av-level-label').textContent")
  page.wait_for_js(READY)
  for _ in range(4):
    page.key("-", "Minus", 189)
  _wait_level(page, 20)
  for _ in range(4):
    page.key("+", "Equal", 187)
  _wait_level(page, 40)
  page.key("0", "Digit0", 48)
  _wait_level(page, 20)
  assert abs(page.evaluate("atlasViewer.state().zoom") - 1) < 1e-6
  # Drag pans.
  tx = page.evaluate("atlasViewer.state().tx")
  page.mouse("mousePressed", 400, 400)
  page.mouse("mouseMoved", 460, 420, buttons=1)
  page.mouse("mouseReleased", 460, 420)
  assert page.evaluate("atlasViewer.state().tx") == pytest.approx(tx + 60, abs=1)


def test_hover_shows_count(page, workdir):
  grid, _ = _atlas(workdir, 20)
  cell = max(grid["cells"], key=lambda c: c["count"])
  x, y = page.evaluate(f"atlasViewer.cellCenter({cell['x']}, {cell['y']})")
  page.mouse("mouseMoved", x, y)
  page.wait_for_js(f"{ROOT_JS}.cell === '{cell['x']},{cell['y']}'", timeout=5)
  count = page.evaluate(
      "document.querySelector('#av-info [data-count]').textContent")
  assert count == str(cell["count"])
  text = page.evaluate("document.getElementById('av-info').textContent")
  assert cell["top_classes"][0]["name"] in text
  assert page.evaluate("document.querySelectorAll('.av-thumbs img').length") > 0
  page.wait_for_js("Array.from(document.querySelectorAll('.av-thumbs img'))"
                   ".every(i => i.complete && i.naturalWidth > 0)", timeout=5)


def test_class_search_shades_cells(page, workdir):
  grid, attr = _atlas(workdir, 20)
  name = grid["cells"][0]["top_classes"][0]["name"]
  cls = grid["cells"][0]["top_classes"][0]["index"]
  page.evaluate("document.getElementById('av-search').focus()")
  page.type_text(name)  # exact name: applied as the datalist pick would be
  page.wait_for_js(f"{ROOT_JS}.shaded === '1'", timeout=10)
  assert page.evaluate(f"{ROOT_JS}.searchClass") == str(cls)
  shading = page.evaluate("atlasViewer.shading()")
  assert shading["cls"] == cls and shading["level"] == 20
  dirs = {(c["x"], c["y"]): c["direction"] for c in grid["cells"]}
  col = attr[:, cls]
  expected_scale = np.abs(col[list(dirs.values())]).max()
  got = {(x, y): v for x, y, v in shading["cells"]}
  assert got.keys() == dirs.keys()
  for xy, d in dirs.items():
    assert got[xy] == pytest.approx(col[d] / expected_scale, abs=0.02), xy
  # The strongest cell keeps its colour, a non-attributed one is washed out.
  hi = max(got, key=got.get)
  lo = min(got, key=got.get)
  img = _shot(page)

  def patch(xy):
    px, py = page.evaluate(f"atlasViewer.cellCenter({xy[0]}, {xy[1]})")
    return img[int(py) - 3:int(py) + 4, int(px) - 3:int(px) + 4].reshape(-1, 3)

  assert np.ptp(patch(hi).mean(0)) > 40, "top cell was not kept in colour"
  assert patch(lo).min() > 200, "unrelated cell was not shaded out"
  page.evaluate("document.getElementById('av-clear').click()")
  page.wait_for_js(f"{ROOT_JS}.shaded === '0'", timeout=5)


def test_layer_switcher_and_density(page):
  assert page.evaluate("document.getElementById('av-layer').options.length") == 2
  page.evaluate("const s = document.getElementById('av-layer'); s.value = '1';"
                "s.dispatchEvent(new Event('change'))")
  page.wait_for_js(f"{ROOT_JS}.layer === '1' && {READY}", timeout=10)
  assert any("/mixed5b/grid_20/icons/" in u for u in page.requests)
  page.evaluate("document.getElementById('av-density').click()")
  assert page.evaluate(f"{ROOT_JS}.density") == "1"
  assert _shot(page).std() > 20
