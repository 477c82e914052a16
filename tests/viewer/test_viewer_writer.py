"""The viewer writer: validation, emitted data, thumbnails, the script."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from atlasjax import viewer
from atlasjax.viewer import synthetic

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base_workdir(tmp_path_factory):
  return synthetic.make_workdir(tmp_path_factory.mktemp("w") / "atlas",
                                sizes=(20, 40), icon_size=16, n_points=3000,
                                n_images=8)


@pytest.fixture
def workdir(base_workdir, tmp_path):
  dst = tmp_path / "atlas"
  shutil.copytree(base_workdir, dst)
  spec = json.loads((dst / "atlas.json").read_text())
  spec["images_root"] = str(dst / "photos")
  (dst / "atlas.json").write_text(json.dumps(spec))
  return dst


def _payload(path: pathlib.Path):
  text = path.read_text()
  start, end = text.index("{"), text.rindex("}") + 1
  return json.loads(text[start:end])


def test_writes_self_contained_page(workdir):
  index = viewer.write_viewer(workdir)
  assert index == workdir / "index.html"
  page = index.read_text()
  assert "viewer/viewer.js" in page and "viewer/data/atlas.js" in page
  for text in (page, (workdir / "viewer/viewer.js").read_text(),
               (workdir / "viewer/viewer.css").read_text()):
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
  meta = _payload(workdir / "viewer/data/atlas.js")
  assert [g["size"] for g in meta["layers"][0]["grids"]] == [20, 40]
  assert meta["classNames"][0] == list(synthetic.CLASS_NAMES)
  spec = json.loads((workdir / "atlas.json").read_text())
  for g, gm in zip(spec["grids"], meta["layers"][0]["grids"]):
    cols = _payload(workdir / gm["cells"])
    assert len(cols["x"]) == len(g["cells"]) == gm["nCells"]
    by_xy = {(c["x"], c["y"]): c for c in g["cells"]}
    for i, (x, y) in enumerate(zip(cols["x"], cols["y"])):
      c = by_xy[(x, y)]
      assert cols["count"][i] == c["count"]
      assert cols["dir"][i] == c["direction"]
      assert (workdir / cols["icon"][i]).is_file()
      assert [t[0] for t in cols["top"][i]] == [
          t["index"] for t in c["top_classes"]][:5]
      for stem in cols["ex"][i]:
        assert (workdir / "viewer/thumbs" / f"{stem}.jpg").is_file()
    # int8 attribution chunks decode back to the float16 matrix.
    attr = np.load(workdir / g["attributions"]).astype(np.float32)
    rows = []
    for k in range(gm["attrChunks"]):
      ch = _payload(workdir / gm["attr"].replace("%d", str(k)))
      q = np.frombuffer(base64.b64decode(ch["data"]), np.int8).reshape(
          -1, ch["rows"])
      rows.append(q * np.asarray(ch["scale"], np.float32)[:, None])
    decoded = np.concatenate(rows).T
    assert decoded.shape == attr.shape
    np.testing.assert_allclose(decoded, attr,
                               atol=np.abs(attr).max() / 254 + 1e-4)


def test_thumbnails_are_small_jpegs_and_unreadable_ones_skipped(workdir):
  from PIL import Image
  photos = sorted((workdir / "photos").iterdir())
  photos[0].write_bytes(b"not a jpeg")
  viewer.write_viewer(workdir, thumb_size=40)
  thumbs = sorted((workdir / "viewer/thumbs").iterdir())
  assert 0 < len(thumbs) < len(photos)
  with Image.open(thumbs[0]) as im:
    assert im.size == (40, 40) and im.format == "JPEG"


def test_missing_images_root_means_no_thumbnails(workdir):
  spec = json.loads((workdir / "atlas.json").read_text())
  spec["images_root"] = str(workdir / "nowhere")
  (workdir / "atlas.json").write_text(json.dumps(spec))
  viewer.write_viewer(workdir)
  meta = _payload(workdir / "viewer/data/atlas.js")
  assert meta["layers"][0]["thumbs"] is False
  cols = _payload(workdir / meta["layers"][0]["grids"][0]["cells"])
  assert all(not ex for ex in cols["ex"])


@pytest.mark.parametrize("breakage, message", [
    (lambda w, s: (w / "atlas.json").unlink(), "atlas.json not found"),
    (lambda w, s: (w / s["grids"][0]["cells"][0]["icon"]).unlink(),
     "icon: file not found"),
    (lambda w, s: (w / "class_names.json").unlink(), "class_names"),
    (lambda w, s: (w / s["grids"][1]["attributions"]).unlink(), "attributions"),
    (lambda w, s: (w / "layout/scatter.png").unlink(), "layout.scatter"),
    (lambda w, s: _edit(w, s, lambda s: s["grids"][0]["cells"][0].update(x=99)),
     "outside the 20x20 grid"),
    (lambda w, s: _edit(w, s, lambda s: s.pop("grids")),
     "missing required key 'grids'"),
    (lambda w, s: _edit(w, s, lambda s: s.update(other_layers=["x/atlas.json"])),
     "other layer"),
])
def test_clear_errors(workdir, breakage, message):
  spec = json.loads((workdir / "atlas.json").read_text())
  breakage(workdir, spec)
  with pytest.raises(viewer.AtlasFormatError, match=message):
    viewer.write_viewer(workdir)


def _edit(workdir, spec, fn):
  fn(spec)
  (workdir / "atlas.json").write_text(json.dumps(spec))


def test_other_layers_are_listed(tmp_path):
  wd = synthetic.make_workdir(tmp_path / "two", sizes=(10,), icon_size=8,
                              n_points=500, layers=("a", "b"), n_images=2)
  viewer.write_viewer(wd)
  meta = _payload(wd / "viewer/data/atlas.js")
  assert [l["name"] for l in meta["layers"]] == ["a", "b"]
  assert meta["layers"][1]["scatter"] == "b/layout/scatter.png"
  assert meta["layers"][0]["names"] == meta["layers"][1]["names"] == 0
  cols = _payload(wd / meta["layers"][1]["grids"][0]["cells"])
  assert cols["icon"][0].startswith("b/grid_10/icons/")


def test_experiment_script(workdir):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  out = subprocess.run(
      [sys.executable, str(REPO / "experiments/viewer.py"),
       f"--workdir={workdir}"], capture_output=True, text=True, env=env,
      timeout=120, check=True).stdout
  assert json.loads(out.strip().splitlines()[-1])["index"] == str(
      workdir / "index.html")
  assert (workdir / "viewer/data/atlas.js").is_file()


def _label(workdir, pages=None):
  """Labels the synthetic atlas (8-channel directions) with a random
  6-feature dictionary; returns it."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from atlasjax.features import sae  # pylint: disable=g-import-not-at-top
  from atlasjax.microscope import dictionary  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(5)
  d = sae.Dictionary(jnp.asarray(rng.normal(size=(8, 6)), jnp.float32),
                     jnp.full((6,), 0.1, jnp.float32),
                     sae.unit_rows(jnp.asarray(rng.normal(size=(6, 8)), jnp.float32)),
                     jnp.zeros((8,), jnp.float32), 2, 1.0)
  dictionary.label_atlas(workdir, d, pages=pages)
  return d


def test_dictionary_labels_reach_the_cells(workdir):
  pages = workdir / "dict_pages"
  pages.mkdir()
  for f in (1, 3):                                  # pages of two features only
    (pages / f"f{f}.html").write_text("<p>feature")
    (pages / f"f{f}.png").write_bytes(b"")
  _label(workdir, pages)
  viewer.write_viewer(workdir)
  meta = _payload(workdir / "viewer/data/atlas.js")
  spec = json.loads((workdir / "atlas.json").read_text())
  for g, gm in zip(spec["grids"], meta["layers"][0]["grids"]):
    assert gm["features"] is True
    labels = json.loads((workdir / f"grid_{g['size']}" /
                         "dictionary_labels.json").read_text())
    assert labels["pages"] == "../dict_pages"
    by_xy = {(c["x"], c["y"]): c["features"] for c in labels["cells"]}
    cols = _payload(workdir / gm["cells"])
    assert len(cols["feat"]) == len(cols["x"])
    shown = 0
    for x, y, feats in zip(cols["x"], cols["y"], cols["feat"]):
      want = by_xy[(x, y)]
      assert [f[0] for f in feats] == [w["feature"] for w in want]
      np.testing.assert_allclose([f[1] for f in feats], [w["code"] for w in want],
                                 rtol=1e-3)
      for f, _, page, image in feats:
        assert (page == f"dict_pages/f{f}.html") == (f in (1, 3))
        assert (image is None) == (page is None)
      shown += bool(feats)
    assert shown > 0
  # Without labels the grid says so and its cells carry no column.
  for g in spec["grids"]:
    (workdir / f"grid_{g['size']}" / "dictionary_labels.json").unlink()
  viewer.write_viewer(workdir)
  gm = _payload(workdir / "viewer/data/atlas.js")["layers"][0]["grids"][0]
  assert gm["features"] is False and "feat" not in _payload(workdir / gm["cells"])
