"""Issue 29, probes 8 and 12 in Chromium: a crafted labels file puts no
``javascript:`` link on the atlas viewer's page, and Microscope unit pages of
layers whose names hold "/" (ViT sub-layers) are reached by their URL.

Fails -- never skips -- without Chromium (see tests/viewer/).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from playwright.sync_api import sync_playwright

import test_workdir_rule
from atlasjax import viewer
from atlasjax import workdir
from atlasjax.microscope import site
from atlasjax.viewer import synthetic

CHROMIUM = os.environ.get("ATLASJAX_CHROMIUM") or shutil.which("chromium") or \
    "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 20_000
LAYER = "block1/attn/out"
DEPTH = 3


@pytest.fixture(scope="module")
def page():
  if not os.access(CHROMIUM, os.X_OK):
    pytest.fail(f"These tests need Chromium at {CHROMIUM}; refusing to skip.",
                pytrace=False)
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    tab = browser.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    yield tab
    browser.close()


def test_crafted_labels_link_stays_a_relative_file_link(page, tmp_path):
  work = synthetic.make_workdir(tmp_path / "atlas", sizes=(4,), icon_size=8,
                                n_points=50, n_images=2)
  name = test_workdir_rule.crafted_labels(work)
  viewer.write_viewer(work)
  root = "document.getElementById('atlas-viewer').dataset"
  page.goto((work / "index.html").as_uri())
  page.wait_for_function(f"{root}.ready === '1'")
  cell = workdir.read_json(work / "grid_4" / viewer.writer.DICTIONARY_LABELS_FILE)["cells"][0]
  page.mouse.click(*page.evaluate(f"atlasViewer.cellCenter({cell['x']}, {cell['y']})"))
  page.wait_for_function(f"{root}.cell === '{cell['x']},{cell['y']}'")
  links = page.evaluate("[...document.querySelectorAll('#av-info a')].map("
                        "a => [a.protocol, a.getAttribute('href')])")
  assert links == [["file:", f"{name.replace(':', '%3A').replace('(', '%28').replace(')', '%29')}/f0.html"]], links
  page.locator("#av-info ol.av-feat a").first.click()
  page.wait_for_url("**/f0.html")        # the crafted folder's page, as a file


def _site(folder):
  """A Microscope site by hand: one layer named like a ViT sub-layer, whose
  unit 0 lists a feature with a javascript: page."""
  out = folder / site.SITE_DIR
  (out / "data" / "block1" / "attn").mkdir(parents=True)
  for name in ("microscope.js", "microscope.css"):
    shutil.copy(site.STATIC_DIR / name, out / name)
  units = [{"v": None, "d": [], "ex": [], "in": {}, "out": {}, "f": []}
           for _ in range(DEPTH)]
  units[0]["f"] = [[5, 0.5, "javascript:alert(1)", None]]
  (out / "data" / "index.js").write_text("window.MICROSCOPE_INDEX=" + json.dumps(
      {"title": "t", "model": "m", "layers": [
          {"name": LAYER, "depth": DEPTH, "rendered": False}]}) + ";")
  (out / "data" / f"{LAYER}.js").write_text("Microscope.addLayer(" + json.dumps(
      {"name": LAYER, "depth": DEPTH, "stride": 1, "rendered": False,
       "crop": None, "units": units}) + ");")
  page = (site.STATIC_DIR / "index.html").read_text().replace("{{TITLE}}", "t")
  page = page.replace("{{LAYER_SCRIPTS}}",   # LAYER's characters need no encoding
                      f'<script src="microscope/data/{LAYER}.js"></script>')
  (folder / "index.html").write_text(page)
  return folder / "index.html"


def test_unit_pages_of_layers_with_slashes_are_reached(page, tmp_path):
  index = _site(tmp_path)
  root = "document.getElementById('microscope').dataset"
  page.goto(index.as_uri() + f"#/unit/{LAYER}/2")
  page.wait_for_function(f"{root}.ready === '1'")
  assert page.evaluate(f"[{root}.view, {root}.unit]") == ["unit", f"{LAYER}:2"]
  page.goto(index.as_uri() + "#/unit/block1%2Fattn%2Fout/1")   # encoded whole
  page.wait_for_function(f"{root}.unit === '{LAYER}:1'")
  page.locator("#ms-layers a").first.click()              # the layer's grid
  page.wait_for_function(f"{root}.view === 'grid' && {root}.layer === '{LAYER}'")
  page.locator(".ms-tile").first.click()                  # its unit 0
  page.wait_for_function(f"{root}.unit === '{LAYER}:0'")
  assert page.evaluate("[...document.querySelectorAll('a')].filter("
                       "a => a.protocol === 'javascript:').length") == 0
  assert page.locator("[data-feature='5']").count() == 1   # shown, not linked
