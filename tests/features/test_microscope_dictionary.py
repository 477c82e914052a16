"""Dictionary-feature pages and atlas labels: top examples equal a brute-force
search, pages link to the unit pages, atlas cells get their strongest
features."""

import json

import jax.numpy as jnp
import numpy as np
from PIL import Image

import toy_model
from atlasjax import images as images_lib
from atlasjax.features import sae
from atlasjax.microscope import dictionary as pages


def _dictionary(c=16, f=6, k=2):
  rng = np.random.default_rng(0)
  dec = rng.normal(size=(f, c))
  dec /= np.linalg.norm(dec, axis=1, keepdims=True)
  return sae.Dictionary(jnp.asarray(rng.normal(size=(c, f)), jnp.float32),
                        jnp.full((f,), 0.2, jnp.float32), jnp.asarray(dec, jnp.float32),
                        jnp.zeros((c,), jnp.float32), k, 0.5)


def test_top_examples_pages_and_atlas_labels(tmp_path):
  model, params = toy_model.TOY_MODEL, toy_model.toy_params()
  rng = np.random.default_rng(1)
  paths = []
  for i in range(5):
    p = tmp_path / f"p{i}.png"
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), np.uint8)).save(p)
    paths.append(str(p))
  d = _dictionary()
  found = pages.top_examples(d, model, params, paths, "conv2", k=3)
  # Brute force: every photo's codes at every position.
  best = []
  for p in paths:
    acts = np.asarray(model.apply(params, images_lib.load_for_model(p, 32)[None],
                                  layers=("conv2",))["conv2"][0])
    best.append(np.asarray(sae.encode(d, acts.reshape(-1, 16))).max(0))
  best = np.stack(best)                                   # [photos, F]
  for f in range(6):
    order = np.argsort(-best[:, f], kind="stable")[:3]
    np.testing.assert_array_equal(found.photos[f], order)
    np.testing.assert_allclose(found.scores[f], best[order, f], rtol=1e-5)
  assert found.positions.shape == (6, 3, 2) and (found.positions < 8).all()

  renders = np.full((6, 16, 16, 3), 0.5, np.float32)
  index = pages.write_pages(tmp_path / "site", "conv2", d, renders, found,
                            crop=16, size=32)
  page = (index.parent / "f2.html").read_text()
  channel = pages.strongest_neurons(d, 2)[0][0]
  assert f'href="../../index.html#/unit/conv2/{channel}"' in page
  assert page.count("<img") == 1 + 3
  assert 'href="f5.html"' in index.read_text()

  # An atlas work directory with one 2×2 grid.
  work = tmp_path / "atlas"
  (work / "grid_2").mkdir(parents=True)
  directions = rng.uniform(size=(3, 16)).astype(np.float32)
  np.save(work / "grid_2/directions.npy", directions)
  cells = [{"x": i % 2, "y": i // 2, "direction": i} for i in range(3)]
  Image.new("RGB", (16, 16), (0, 200, 0)).save(work / "grid_2/atlas.png")
  (work / "atlas.json").write_text(json.dumps({"layer": "conv2", "grids": [
      {"size": 2, "atlas": "grid_2/atlas.png", "directions": "grid_2/directions.npy",
       "cells": cells}]}))
  [path] = pages.label_atlas(work, d)
  labels = json.loads(path.read_text())["cells"]
  codes = np.asarray(sae.encode(d, directions))
  for i, cell in enumerate(labels):
    assert cell["features"][0]["feature"] == int(codes[i].argmax())
    assert len(cell["features"]) == min(3, int((codes[i] > 0).sum()))

  # The labels printed on the atlas: a dark band with white text along the
  # bottom of every labelled cell, the unlisted cell (1, 1) left green.
  with Image.open(pages.draw_labels(work, 2)) as im:
    image = np.asarray(im.convert("RGB"), np.int32)
  cell = pages.LABELLED_CELL_PX
  assert image.shape == (2 * cell, 2 * cell, 3)
  for entry in labels:
    band = image[(entry["y"] + 1) * cell - cell // 4:(entry["y"] + 1) * cell,
                 entry["x"] * cell:(entry["x"] + 1) * cell]
    if entry["features"]:
      assert (band.sum(-1) < 60).mean() > 0.5 and band.max() > 200
  assert np.abs(image[cell + 8:-8, cell + 8:-8] - [0, 200, 0]).max() < 30  # JPEG edges
