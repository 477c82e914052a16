"""The Microscope pipeline on the toy CNN, and its site in headless Chromium.

Fails -- never skips -- without /usr/bin/chromium (the browser is part of the
test environment; `apt-get install -y chromium`).
"""

import json
import pathlib
import re

import numpy as np
import pytest
from PIL import Image

from atlasjax import images as images_lib
from atlasjax import microscope

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
CONFIG = microscope.MicroscopeConfig(layers=("conv2",), size=32, steps=3,
                                     chunk_size=8, examples=3, links=3, tile=32,
                                     batch_size=4, transforms="none")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  folder = tmp_path_factory.mktemp("photos")
  rng = np.random.default_rng(0)
  for i in range(6):
    pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f"photo_{i}.jpg")
  return images_lib.list_images(folder)


@pytest.fixture(scope="module")
def built(toy, photos, tmp_path_factory):
  model, params = toy
  workdir = tmp_path_factory.mktemp("microscope")
  summary = microscope.build(model, params, CONFIG, workdir, photos,
                             log=lambda _: None)
  return workdir, summary


def test_site_layers_are_rendered_layers_and_neighbours(built):
  workdir, summary = built
  assert summary["site_layers"] == ("conv1", "conv2")
  assert summary["pairs"] == [["conv1", "conv2"]]
  assert summary["renders"]["conv2"]["rendered"] == [0, 8]
  renders = microscope.load_renders(workdir, "conv2")
  assert sorted(renders) == list(range(16))
  assert renders[0].shape == (32, 32, 3) and renders[0].dtype == np.uint8
  assert (workdir / "weights" / "conv1__conv2.npy").is_file()
  data = (workdir / "microscope" / "data" / "conv2.js").read_text()
  layer = json.loads(re.fullmatch(r"Microscope\.addLayer\((.*)\);\n", data, re.S)[1])
  unit = layer["units"][3]
  assert unit["v"] == "img/conv2/3.png" and len(unit["ex"]) == 3
  assert {l[0] for l in unit["in"]["p"] + unit["in"]["n"]} == {"conv1"}
  for rel in [unit["v"], unit["ex"][0][0]]:
    assert (workdir / "microscope" / rel).is_file()


def test_rerun_renders_only_missing_chunks_identically(toy, photos, built):
  model, params = toy
  workdir, _ = built
  lost = workdir / "renders" / "conv2" / "00008.npz"
  kept = workdir / "renders" / "conv2" / "00000.npz"
  before = np.load(lost)["images"]
  kept_mtime = kept.stat().st_mtime_ns
  lost.unlink()
  summary = microscope.build(model, params, CONFIG, workdir, photos,
                             log=lambda _: None)
  assert summary["renders"]["conv2"]["rendered"] == [8]
  assert kept.stat().st_mtime_ns == kept_mtime
  np.testing.assert_array_equal(np.load(lost)["images"], before)


def test_other_settings_refuse_to_mix(toy, photos, built):
  model, params = toy
  workdir, _ = built
  other = microscope.MicroscopeConfig(**{**CONFIG.__dict__, "steps": 4})
  with pytest.raises(microscope.MicroscopeError, match="steps=3"):
    microscope.build(model, params, other, workdir, photos, log=lambda _: None)
  with pytest.raises(microscope.MicroscopeError, match="not a unit layer"):
    microscope.site_layers(model, ["logits"])


def test_walk_a_circuit_in_the_browser(built):
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  workdir, _ = built
  if not pathlib.Path(CHROMIUM).is_file():
    pytest.fail(f"The microscope test needs {CHROMIUM}: apt-get install -y chromium",
                pytrace=False)
  index = (workdir / "index.html").resolve().as_uri()
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(index + "#/unit/conv2/3")
    root = page.locator("#microscope")
    page.wait_for_function("document.getElementById('microscope').dataset.ready === '1'")
    assert root.get_attribute("data-unit") == "conv2:3"
    assert page.locator("h2").inner_text() == "conv2:3"
    assert page.locator(".ms-examples img").count() == 3
    # Follow the strongest positive input: we land on that conv1 unit's page,
    # which lists conv2 among its outputs (the circuit, walked backwards).
    link = page.locator("a.unit-link[data-sign='p']").first
    target = link.get_attribute("data-unit")
    assert target.startswith("conv1:")
    link.click()
    page.wait_for_function(
        f"document.getElementById('microscope').dataset.unit === '{target}'")
    assert page.locator("h2").inner_text() == target
    assert page.locator("a.unit-link[data-unit^='conv2:']").count() > 0
    # Search by unit id, and the layer grid.
    page.fill("#ms-search", "conv2:11")
    page.press("#ms-search", "Enter")
    page.wait_for_function(
        "document.getElementById('microscope').dataset.unit === 'conv2:11'")
    page.goto(index + "#/layer/conv2")
    page.wait_for_function(
        "document.getElementById('microscope').dataset.view === 'grid'")
    assert page.locator("a.ms-tile").count() == 16
    browser.close()
  assert not errors, errors
  assert all(u.startswith(("file://", "data:")) for u in requests), requests


def _layer_data(workdir, layer):
  data = (workdir / "microscope" / "data" / f"{layer}.js").read_text()
  return json.loads(re.fullmatch(r"Microscope\.addLayer\((.*)\);\n", data, re.S)[1])


def test_unit_pages_link_dictionary_features(toy, photos, built):
  """Dictionary pages written after the site add each unit's strongest
  features (NumPy argsort of |decoder| per channel); a rebuilt site keeps
  them; in the browser a unit links to a feature page and back."""
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from atlasjax.features import sae  # pylint: disable=g-import-not-at-top
  from atlasjax.microscope import dictionary  # pylint: disable=g-import-not-at-top
  model, params = toy
  workdir, _ = built
  rng = np.random.default_rng(3)
  decoder = rng.normal(size=(12, 16))
  decoder /= np.linalg.norm(decoder, axis=1, keepdims=True)
  d = sae.Dictionary(jnp.asarray(rng.normal(size=(16, 12)), jnp.float32),
                     jnp.zeros((12,), jnp.float32), jnp.asarray(decoder, jnp.float32),
                     jnp.zeros((16,), jnp.float32), 2, 0.5)
  pages = range(6)                                # pages for features 0..5 only
  found = dictionary.top_examples(d, model, params, photos, "conv2", k=2)
  dictionary.write_pages(workdir, "conv2", d, np.full((6, 8, 8, 3), 0.5), found,
                         crop=16, size=32, features=pages)

  weights = decoder.T * 0.5                                   # [C, F], layer units
  expected = np.argsort(-np.abs(weights), axis=1, kind="stable")[:, :8]
  units = _layer_data(workdir, "conv2")["units"]
  for c, unit in enumerate(units):
    assert [f for f, *_ in unit["f"]] == expected[c].tolist()
    np.testing.assert_allclose([w for _, w, *_ in unit["f"]],
                               weights[c, expected[c]], atol=1e-4)
    for f, _, page, image in unit["f"]:
      assert (page is not None) == (f in pages)
      if page:
        assert (workdir / page).is_file() and (workdir / image).is_file()
  microscope.build(model, params, CONFIG, workdir, photos, log=lambda _: None)
  assert [u["f"] for u in _layer_data(workdir, "conv2")["units"]] == [
      u["f"] for u in units]

  c = next(c for c in range(16) if expected[c, 0] in pages)
  index = (workdir / "index.html").resolve().as_uri()
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(index + f"#/unit/conv2/{c}")
    page.wait_for_function("document.getElementById('microscope').dataset.ready === '1'")
    cards = page.locator(".feature-link")
    assert cards.count() == 8
    assert page.locator("a.feature-link").count() == int(np.isin(expected[c], pages).sum())
    assert cards.first.get_attribute("data-feature") == str(expected[c, 0])
    cards.first.click()
    page.wait_for_url(f"**/dictionary/conv2/f{expected[c, 0]}.html")
    neuron = dictionary.strongest_neurons(d, int(expected[c, 0]))[0][0]
    page.locator(f"a[href$='#/unit/conv2/{neuron}']").click()
    page.wait_for_function(
        f"document.getElementById('microscope')?.dataset.unit === 'conv2:{neuron}'")
    browser.close()
  assert not errors, errors
  # A dictionary of another width is refused, naming the cause.
  other = d._replace(decoder=d.decoder[:, :8], encoder=d.encoder[:8])
  with pytest.raises(ValueError, match="not trained on this layer"):
    dictionary.write_unit_links(workdir, "conv2", other)
  dictionary.write_unit_links(workdir, "conv2", d)
