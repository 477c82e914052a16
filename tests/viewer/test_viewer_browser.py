"""The static atlas viewer driven the way a person uses it, in Debian's
``chromium`` through Playwright (``executable_path``; never a browser download).

Each test opens the viewer from disk (``file://``), acts with real mouse and
keyboard events, saves a screenshot under the test's tmp folder and asserts
on what changed. Fails -- never skips -- without a Chromium: the browser is
part of the test environment (``.ci/run`` installs it).
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import pathlib
import shutil
import threading

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from atlasjax import viewer
from atlasjax.viewer import synthetic

CHROMIUM = os.environ.get("ATLASJAX_CHROMIUM") or shutil.which("chromium") or \
    "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1100, "height": 760}
TIMEOUT_MS = 20_000
ROOT = "document.getElementById('atlas-viewer').dataset"
READY = f"{ROOT}.ready === '1' && {ROOT}.iconsPending === '0'"
# Two animation frames: the canvas holds what the last state change drew.
TWO_FRAMES = ("() => new Promise(r => requestAnimationFrame(() => "
              "requestAnimationFrame(r)))")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  wd = synthetic.make_workdir(tmp_path_factory.mktemp("atlas"), sizes=(20, 40),
                              icon_size=24, n_points=4000,
                              layers=("mixed4c", "mixed5b"), n_images=12)
  _label_with_a_dictionary(wd)
  viewer.write_viewer(wd)
  return wd


def _label_with_a_dictionary(wd):
  """mixed4c's cells labelled by a random 6-feature dictionary, with a
  (one-line) feature page and render per feature in ``wd/dict_pages``."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from atlasjax.features import sae  # pylint: disable=g-import-not-at-top
  from atlasjax.microscope import dictionary  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(5)
  pages = wd / "dict_pages"
  pages.mkdir()
  for f in range(6):
    (pages / f"f{f}.html").write_text(f"<title>feature {f}</title>")
    Image.new("RGB", (8, 8), (40 * f, 90, 160)).save(pages / f"f{f}.png")
  d = sae.Dictionary(jnp.asarray(rng.normal(size=(8, 6)), jnp.float32),
                     jnp.full((6,), 0.1, jnp.float32),
                     sae.unit_rows(jnp.asarray(rng.normal(size=(6, 8)), jnp.float32)),
                     jnp.zeros((8,), jnp.float32), 2, 1.0)
  dictionary.label_atlas(wd, d, pages=pages)


@pytest.fixture(scope="module")
def browser():
  if not os.access(CHROMIUM, os.X_OK):
    pytest.fail(f"The viewer tests need Chromium at {CHROMIUM} (apt-get install "
                "chromium, or set ATLASJAX_CHROMIUM); refusing to skip.",
                pytrace=False)
  with sync_playwright() as p:
    b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


class Viewer:
  """One page of the viewer plus what it logged and requested."""

  def __init__(self, page, shots: pathlib.Path):
    self.page, self.shots = page, shots
    self.errors: list[str] = []
    self.requests: list[str] = []
    page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
    page.on("pageerror", lambda e: self.errors.append(str(e)))
    page.on("request", lambda r: self.requests.append(r.url))
    page.set_default_timeout(TIMEOUT_MS)

  def open(self, url: str) -> None:
    self.page.goto(url)
    self.wait(READY)

  def js(self, expr: str, arg=None):
    return self.page.evaluate(expr, arg)

  def wait(self, condition: str) -> None:
    self.page.wait_for_function(condition)

  def data(self, key: str) -> str:
    return self.js(f"{ROOT}.{key}")

  def text(self, selector: str) -> str:
    return self.page.locator(selector).inner_text()

  def shot(self, name: str) -> np.ndarray:
    """Saves a screenshot to the tmp folder and returns it as float RGB."""
    self.js(TWO_FRAMES)
    path = self.shots / f"{name}.png"
    png = self.page.screenshot(path=str(path))
    assert path.stat().st_size > 0
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32)

  def cell_center(self, x: int, y: int) -> tuple[float, float]:
    return tuple(self.js(f"atlasViewer.cellCenter({x}, {y})"))

  def atlas_centre(self) -> tuple[float, float]:
    box = self.page.locator("#av-canvas").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


@pytest.fixture
def view(browser, workdir, tmp_path):
  """The viewer opened from disk; afterwards nothing went to the console and
  nothing was requested from outside the work directory."""
  context = browser.new_context(viewport=VIEWPORT)
  v = Viewer(context.new_page(), tmp_path)
  v.open((workdir / "index.html").resolve().as_uri())
  assert v.data("level") == "20"
  yield v
  context.close()
  assert not v.errors, f"console errors: {v.errors}"
  outside = [u for u in v.requests if not u.startswith(
      (workdir.resolve().as_uri(), "data:"))]
  assert not outside, f"requests outside the work directory: {outside}"


def _grid(workdir, size, layer_dir=""):
  spec = json.loads((workdir / layer_dir / "atlas.json").read_text())
  grid = next(g for g in spec["grids"] if g["size"] == size)
  return grid, np.load(workdir / layer_dir / grid["attributions"]).astype(np.float32)


def _patch(img, xy, r=3):
  x, y = int(xy[0]), int(xy[1])
  return img[y - r:y + r + 1, x - r:x + r + 1].reshape(-1, 3)


def test_opens_from_disk_with_icons_drawn(view):
  img = view.shot("opened")
  assert img.std() > 20, "screenshot looks blank"
  colourful = (img.max(-1) - img.min(-1)) > 60
  assert colourful.mean() > 0.05, "icons were not drawn"
  assert "20×20" in view.text("#av-level-label")
  assert any("/grid_20/icons/" in u for u in view.requests)


def test_wheel_zoom_shows_the_finer_grid_and_0_fits(view):
  before = view.shot("before_zoom")
  x, y = view.atlas_centre()
  view.page.mouse.move(x, y)
  for _ in range(12):               # notches until the 40×40 grid takes over
    view.page.mouse.wheel(0, -120)
    if view.data("level") == "40":
      break
  view.wait(f"{ROOT}.level === '40' && {READY}")
  assert "40×40" in view.text("#av-level-label")
  zoom = float(view.data("zoom"))
  assert zoom >= 2.0                 # 40/20: the finer level's threshold
  assert any("/grid_40/icons/" in u for u in view.requests)
  zoomed = view.shot("zoomed_40")
  assert np.abs(zoomed - before).mean() > 5, "the picture did not change"
  # Press 0: back to the fitted 20×20 view, the same picture as at first.
  view.page.locator("#av-stage").focus()
  view.page.keyboard.press("0")
  view.wait(f"{ROOT}.level === '20' && {READY}")
  assert view.js("atlasViewer.state().zoom") == pytest.approx(1.0)
  fitted = view.shot("fitted")
  assert np.abs(fitted - before).mean() < 1.0


def test_hover_shows_count_top_classes_and_nearest_photos(view, workdir):
  grid, _ = _grid(workdir, 20)
  cell = max(grid["cells"], key=lambda c: c["count"])
  assert "Hover a cell" in view.text("#av-info")
  view.page.mouse.move(*view.cell_center(cell["x"], cell["y"]))
  view.wait(f"{ROOT}.cell === '{cell['x']},{cell['y']}'")
  info = view.page.locator("#av-info")
  assert info.locator("[data-count]").inner_text() == str(cell["count"])
  shown = info.locator("ol.av-top li > span:first-child").all_inner_texts()
  assert shown == [t["name"] for t in cell["top_classes"]]
  thumbs = info.locator(".av-thumbs img")
  view.page.wait_for_function(
      "Array.from(document.querySelectorAll('.av-thumbs img'))"
      ".every(i => i.complete && i.naturalWidth > 0)")
  assert [thumbs.nth(i).get_attribute("title") for i in range(thumbs.count())] \
      == cell["examples"][:thumbs.count()]
  assert thumbs.count() == min(6, len(cell["examples"])) > 0
  img = view.shot("hover")
  # The hovered cell gets a dark outline: its border pixels darken.
  cx, cy = view.cell_center(cell["x"], cell["y"])
  half = view.js("atlasViewer.state().scale") / 20 / 2
  edge = img[int(cy), int(cx - half + 1):int(cx - half + 3)]
  assert edge.mean() < 90, edge


def test_a_pinned_cell_links_its_dictionary_features(view, workdir):
  labels = json.loads((workdir / "grid_20/dictionary_labels.json").read_text())
  cell = next(c for c in labels["cells"] if len(c["features"]) >= 2)
  view.page.mouse.click(*view.cell_center(cell["x"], cell["y"]))
  view.wait(f"{ROOT}.cell === '{cell['x']},{cell['y']}'")
  items = view.page.locator("#av-info ol.av-feat li")
  assert [items.nth(i).get_attribute("data-feature") for i in range(items.count())] \
      == [str(f["feature"]) for f in cell["features"]]
  first = cell["features"][0]["feature"]
  view.page.locator("#av-info ol.av-feat a").first.click()
  view.page.wait_for_url(f"**/dict_pages/f{first}.html")
  assert view.page.title() == f"feature {first}"


def test_typing_a_class_shades_the_atlas(view, workdir):
  grid, attr = _grid(workdir, 20)
  top = grid["cells"][0]["top_classes"][0]
  before = view.shot("unshaded")
  view.page.locator("#av-search").click()
  view.page.keyboard.type(top["name"])      # exact name: applied at once
  view.wait(f"{ROOT}.shaded === '1'")
  assert view.data("searchClass") == str(top["index"])
  assert top["name"] in view.text("#av-legend")
  after = view.shot("shaded")
  # Shading follows the class's attribution to each cell's direction.
  col = attr[:, top["index"]]
  cells = {(c["x"], c["y"]): col[c["direction"]] for c in grid["cells"]}
  hi = max(cells, key=cells.get)
  lo = min(cells, key=cells.get)
  hi_xy, lo_xy = view.cell_center(*hi), view.cell_center(*lo)
  assert np.ptp(_patch(after, hi_xy).mean(0)) > 40, "top cell lost its colour"
  assert _patch(after, lo_xy).min() > 200, "unrelated cell was not washed out"
  assert _patch(before, lo_xy).min() < 200, "that cell was already pale"
  shading = view.js("atlasViewer.shading()")
  got = {(x, y): v for x, y, v in shading["cells"]}
  scale = np.abs(np.array(list(cells.values()))).max()
  for xy, value in cells.items():
    assert got[xy] == pytest.approx(value / scale, abs=0.02), xy
  # Escape clears it and the colours come back.
  view.page.locator("#av-search").press("Escape")
  view.wait(f"{ROOT}.shaded === '0'")
  assert _patch(view.shot("cleared"), lo_xy).min() < 200


def test_switching_layers_loads_the_other_atlas(view, workdir):
  before = view.shot("layer_mixed4c")
  select = view.page.locator("#av-layer")
  assert select.locator("option").all_inner_texts() == ["mixed4c", "mixed5b"]
  select.select_option(label="mixed5b")
  view.wait(f"{ROOT}.layer === '1' && {READY}")
  assert any("/mixed5b/grid_20/icons/" in u for u in view.requests)
  after = view.shot("layer_mixed5b")
  assert np.abs(after - before).mean() > 3, "the atlas did not change"
  # The hover panel now reads the other layer's cells.
  grid, _ = _grid(workdir, 20, "mixed5b")
  cell = max(grid["cells"], key=lambda c: c["count"])
  view.page.mouse.move(*view.cell_center(cell["x"], cell["y"]))
  view.wait(f"{ROOT}.cell === '{cell['x']},{cell['y']}'")
  assert view.page.locator("#av-info [data-count]").inner_text() == \
      str(cell["count"])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):
    pass


def test_served_over_local_http_requests_nothing_outside(browser, workdir, tmp_path):
  handler = functools.partial(_QuietHandler, directory=str(workdir))
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=httpd.serve_forever,
                            kwargs={"poll_interval": 0.05}, daemon=True)
  thread.start()
  context = browser.new_context(viewport=VIEWPORT)
  try:
    v = Viewer(context.new_page(), tmp_path)
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    v.open(base + "index.html")
    assert v.shot("http").std() > 20
    assert not v.errors, v.errors
    assert v.requests and all(u.startswith((base, "data:")) for u in v.requests)
  finally:
    context.close()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)
