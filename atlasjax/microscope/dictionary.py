"""Microscope pages and atlas labels for dictionary features.

A trained dictionary (:mod:`atlasjax.features.sae`) turns a layer's ``C``
neurons into ``F`` features. This module gives each feature what the
Microscope gives a neuron:

* :func:`top_examples`: the photos (and the position in each) where the
  feature's code is largest, streamed over any number of photos with a
  running top-``k`` per feature;
* :func:`strongest_neurons`: the channels its decoder row writes most
  (each a link to that unit's Microscope page, ``#/unit/<layer>/<c>``);
* :func:`unit_features`: the other direction, the features whose decoder
  rows weigh most on each channel, which the Microscope's unit pages list
  (:func:`atlasjax.microscope.site.unit_feature_links`);
* :func:`write_pages`: static HTML (no script, opens from disk): an index
  grid of every feature's render and one page per feature with its render,
  its top dataset crops and its strongest neurons;
* :func:`label_atlas`: an atlas whose cells are labelled by their strongest
  dictionary features (the codes of each cell's average activation vector),
  written beside the atlas as ``grid_<n>/dictionary_labels.json`` (the atlas
  viewer shows them), and :func:`draw_labels`: the same labels printed on
  the atlas image.
"""

from __future__ import annotations

import dataclasses
import html
import os
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from atlasjax import images as images_lib
from atlasjax import plotting
from atlasjax import progress
from atlasjax import readers
from atlasjax import workdir as workdir_lib
from atlasjax.classic import examples as examples_lib
from atlasjax.features import sae
from atlasjax.features import store
from atlasjax.microscope import site
from atlasjax.models import base
from atlasjax.viewer import writer

PAGES_DIR = site.FEATURE_PAGES_DIR
LABELS_FILE = writer.DICTIONARY_LABELS_FILE
DEFAULT_EXAMPLES = 9
DEFAULT_NEURONS = 8
# Dictionary features listed on each unit page.
DEFAULT_UNIT_FEATURES = 8
TILE = 96
# The labelled atlas image: each cell's icon at least this many px, its
# strongest feature's id in white on a dark band along the icon's bottom.
LABELLED_CELL_PX = 48
LABEL_BAND = (0, 0, 0)
LABEL_TEXT = (255, 255, 255)
LABELLED_ATLAS = "atlas_dictionary_labels.jpg"
# Photos per forward pass in top_examples.
BATCH = 8


@dataclasses.dataclass(frozen=True)
class TopExamples:
  """Each feature's strongest photos, best first (-1: fewer photos than k)."""
  scores: np.ndarray      # [F, k] largest code of the feature in the photo
  photos: np.ndarray      # [F, k] index into paths
  positions: np.ndarray   # [F, k, 2] (row, col) of that code in the layer
  paths: tuple[str, ...]
  stride: int


def _photo_maxima(model, layer, d):
  """``(params, images) -> (max code [B, F], argmax position [B, F])``."""
  @jax.jit
  def fn(params, images):
    acts = model.apply(params, images, layers=(layer,))[layer]
    b, h, w, c = acts.shape
    codes = sae.encode(d, acts.reshape(-1, c)).reshape(b, h * w, -1)
    return codes.max(1), codes.argmax(1)
  return fn


def top_examples(d: sae.Dictionary, model: base.Model, params,
                 paths: Sequence[str], layer: str, k: int = DEFAULT_EXAMPLES,
                 size: int | None = None) -> TopExamples:
  """The ``k`` photos where each feature's code peaks (see module docstring)."""
  size = size or model.input_size
  width = model.apply(params, jnp.zeros((1, size, size, 3)), layers=(layer,))[layer].shape[2]
  maxima = _photo_maxima(model, layer, d)
  scores = np.full((d.features, k), -np.inf, np.float32)
  photos = np.full((d.features, k), -1, np.int64)
  where = np.zeros((d.features, k), np.int64)
  load = lambda p: images_lib.load_for_model(p, size)
  batches = images_lib.iter_batches(list(paths), BATCH, load)
  for batch in progress.iterate(batches, total=-(-len(paths) // BATCH),
                                desc="dictionary examples", unit="batch"):
    best, at = (np.asarray(a) for a in maxima(params, jnp.asarray(batch.images)))
    all_scores = np.concatenate([scores, best.T], 1)
    order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(all_scores, order, 1)
    photos = np.take_along_axis(np.concatenate(
        [photos, np.broadcast_to(batch.indices, best.T.shape)], 1), order, 1)
    where = np.take_along_axis(np.concatenate([where, at.T], 1), order, 1)
  photos = np.where(np.isfinite(scores), photos, -1)
  positions = np.stack([where // width, where % width], -1)
  return TopExamples(scores, photos, positions, tuple(paths),
                     model.layer(layer).stride)


def strongest_neurons(d: sae.Dictionary, feature: int,
                      n: int = DEFAULT_NEURONS) -> list[tuple[int, float]]:
  """``(channel, weight)`` of the ``n`` largest ``|decoder[feature]|`` entries."""
  row = np.asarray(d.decoder[feature]) * d.input_scale
  order = np.argsort(-np.abs(row), kind="stable")[:n]
  return [(int(c), float(row[c])) for c in order]


def unit_features(d: sae.Dictionary, n: int = DEFAULT_UNIT_FEATURES
                  ) -> list[list[tuple[int, float]]]:
  """Per channel, ``(feature, weight)`` of the ``n`` largest ``|decoder[:, c]|``.

  The weights are in the layer's units (``decoder · input_scale``), the
  same numbers :func:`strongest_neurons` gives from the feature's side;
  ties keep the lower feature first.
  """
  columns = np.asarray(d.decoder).T * d.input_scale        # [C, F]
  order = np.argsort(-np.abs(columns), axis=1, kind="stable")[:, :n]
  return [[(int(f), round(float(columns[c, f]), site.KERNEL_DECIMALS))
           for f in order[c]] for c in range(len(columns))]


def example_crops(found: TopExamples, feature: int, crop: int,
                  size: int) -> list[np.ndarray]:
  """The feature's top photos cropped around the peak, ``TILE`` px each."""
  tiles = []
  for photo, pos in zip(found.photos[feature], found.positions[feature]):
    if photo < 0:
      continue
    image = images_lib.load_for_model(found.paths[photo], size)
    top, left, side = examples_lib.crop_box(pos, found.stride, crop, image.shape[:2])
    tiles.append(plotting.resize(image[top:top + side, left:left + side], (TILE, TILE)))
  return tiles


def _page(title: str, body: str) -> str:
  return (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
          "<style>body{font:14px sans-serif;margin:1em}img{margin:2px;"
          "image-rendering:auto}.grid a{display:inline-block;text-align:center;"
          "font-size:11px}</style>" + body)


def _site_index(layer: str) -> str:
  """``out/index.html`` relative to ``out/dictionary/<layer>/``."""
  return "../" * (1 + len(pathlib.PurePosixPath(layer).parts)) + "index.html"


def write_unit_links(out: os.PathLike | str, layer: str, d: sae.Dictionary,
                     n: int = DEFAULT_UNIT_FEATURES) -> pathlib.Path:
  """Writes ``links.json``, each unit's strongest features, for the site.

  Every feature with a page in the folder is marked as such (pages written
  by earlier calls count too), and a Microscope site already in ``out``
  gets the links at once (:func:`atlasjax.microscope.site.add_feature_links`).
  """
  folder = pathlib.Path(out) / PAGES_DIR / layer
  pages = sorted(f for f in range(d.features) if (folder / f"f{f}.html").is_file())
  path = site.feature_links_path(out, layer)
  store.save_json(path, {"layer": layer, "pages": pages,
                         "units": unit_features(d, n)})
  site.add_feature_links(out, layer)
  return path


def write_pages(out: os.PathLike | str, layer: str, d: sae.Dictionary,
                renders: np.ndarray, found: TopExamples, crop: int, size: int,
                unit_link: str | None = None,
                features: Sequence[int] | None = None) -> pathlib.Path:
  """Writes ``out/dictionary/<layer>/index.html`` and one page per feature.

  ``renders[i]`` is ``features[i]``'s render (``[N, S, S, 3]`` in [0, 1]);
  ``unit_link`` formats a neuron's Microscope URL relative to the pages
  (default: the unit page of a Microscope site in ``out``). The unit pages
  of that site link back through :func:`write_unit_links`.
  """
  folder = pathlib.Path(out) / PAGES_DIR / layer
  features = list(range(d.features)) if features is None else list(features)
  unit_link = unit_link or _site_index(layer) + "#/unit/{layer}/{channel}"
  linked = site.url_path(layer)   # each segment of "block1/attn/out" encoded
  cells = []
  for i, f in enumerate(features):
    store.save_png(folder / f"f{f}.png", renders[i])
    for r, tile in enumerate(example_crops(found, f, crop, size)):
      store.save_png(folder / f"f{f}_ex{r}.jpg", tile)
    neurons = "".join(
        f'<li><a href="{html.escape(unit_link.format(layer=linked, channel=c))}">'
        f"{html.escape(layer)}:{c}</a> {w:+.3f}</li>"
        for c, w in strongest_neurons(d, f))
    crops = "".join(f'<img src="f{f}_ex{r}.jpg" width={TILE}>'
                    for r in range(int((found.photos[f] >= 0).sum())))
    body = (f'<p><a href="index.html">{html.escape(layer)} dictionary</a></p>'
            f"<h1>{html.escape(layer)} feature {f}</h1>"
            f'<img src="f{f}.png" width=192><h2>Dataset examples</h2>{crops}'
            f"<h2>Strongest neurons (decoder weights)</h2><ol>{neurons}</ol>")
    workdir_lib.write_text(folder / f"f{f}.html", _page(f"{layer} feature {f}", body))
    cells.append(f'<a href="f{f}.html"><img src="f{f}.png" width={TILE}><br>{f}</a>')
  index = (f"<h1>{html.escape(layer)}: {d.features} dictionary features "
           f"(k = {d.k})</h1><div class=grid>{''.join(cells)}</div>")
  workdir_lib.write_text(folder / "index.html", _page(f"{layer} dictionary", index))
  write_unit_links(out, layer, d)
  return folder / "index.html"


def label_cells(d: sae.Dictionary, directions: np.ndarray,
                top: int = 3) -> list[list[dict]]:
  """Each cell's ``top`` features by code of its average vector."""
  codes = np.asarray(sae.encode(d, jnp.asarray(directions, jnp.float32)))
  order = np.argsort(-codes, axis=1, kind="stable")[:, :top]
  return [[{"feature": int(f), "code": round(float(codes[i, f]), 6)}
           for f in order[i] if codes[i, f] > 0] for i in range(len(codes))]


def check_atlas(atlas_workdir: os.PathLike | str, d: sae.Dictionary,
                layer: str | None = None, trained_on: dict | None = None) -> None:
  """Raises ``ValueError`` unless the atlas can be labelled by ``d``: same
  width and, when ``trained_on`` (the dictionary's ``metrics.json``) says,
  the same model and weights as the atlas's collection. Writes nothing."""
  from atlasjax.atlas import result  # pylint: disable=g-import-not-at-top

  atlas = result.Atlas.open(atlas_workdir, layer)
  for grid in atlas.info["grids"]:
    depth = readers.read_npy(atlas.workdir / grid["directions"],
                             readers.Array((None, None))).shape[1]
    if depth != d.depth:
      raise ValueError(f"The dictionary reads {d.depth} channels; the atlas of "
                       f"{atlas.layer} has {depth}.")
  trained_on = trained_on or {}
  collected = atlas.workdir / "collect" / "manifest.json"
  settings = (store.load_json(collected).get("settings", {})
              if collected.is_file() else {})
  for key, theirs in (("model", atlas.info.get("model")),
                      ("weights", settings.get("weights"))):
    ours = trained_on.get(key)
    if ours is not None and theirs is not None and ours != theirs:
      raise ValueError(f"The dictionary was trained on {key} {ours}; the atlas "
                       f"{atlas.workdir} was made with {theirs}: its labels "
                       "would mean nothing. Label an atlas of the same model "
                       "and weights.")


def label_atlas(atlas_workdir: os.PathLike | str, d: sae.Dictionary,
                layer: str | None = None, top: int = 3,
                pages: os.PathLike | str | None = None,
                trained_on: dict | None = None) -> list[pathlib.Path]:
  """Labels every grid of an atlas by dictionary features.

  Writes ``grid_<n>/dictionary_labels.json``: one entry per cell, in the
  order of ``atlas.json``'s cells, with ``x``, ``y`` and the cell's
  ``features`` (id and code, strongest first), and ``pages``, the folder of
  the feature pages (:func:`write_pages`) relative to that file, or null.
  The atlas viewer (:mod:`atlasjax.viewer`) shows the labels of the cell
  under the pointer, each linked to its page. Checked first
  (:func:`check_atlas`, ``trained_on`` the dictionary's ``metrics.json``);
  written under the atlas's lock.
  """
  from atlasjax.atlas import result  # pylint: disable=g-import-not-at-top

  check_atlas(atlas_workdir, d, layer, trained_on)
  atlas = result.Atlas.open(atlas_workdir, layer)
  with workdir_lib.lock(atlas.workdir):
    return _write_labels(atlas, d, top, pages)


def _write_labels(atlas, d, top, pages) -> list[pathlib.Path]:
  written = []
  for grid in atlas.info["grids"]:
    directions = readers.read_npy(atlas.workdir / grid["directions"],
                                  readers.Array((None, d.depth)))
    labels = label_cells(d, directions, top)
    entries = [{"x": c["x"], "y": c["y"], "features": labels[c["direction"]]}
               for c in grid["cells"]]
    path = atlas.workdir / pathlib.Path(grid["directions"]).parent / LABELS_FILE
    rel = (pathlib.Path(os.path.relpath(pathlib.Path(pages).resolve(),
                                        path.parent.resolve())).as_posix()
           if pages is not None else None)
    store.save_json(path, {"layer": atlas.layer, "size": grid["size"],
                           "pages": rel, "cells": entries})
    written.append(path)
  return written


def draw_labels(atlas_workdir: os.PathLike | str, size: int,
                layer: str | None = None) -> pathlib.Path:
  """Prints each cell's strongest feature on grid ``size``'s atlas image.

  Reads ``grid_<size>/dictionary_labels.json`` (:func:`label_atlas`) and
  the grid's ``atlas`` image, enlarges it so that a cell is at least
  ``LABELLED_CELL_PX`` px, writes ``f<feature>`` along the bottom of every
  labelled cell and saves ``grid_<size>/atlas_dictionary_labels.jpg``.
  """
  from atlasjax.atlas import result  # pylint: disable=g-import-not-at-top

  atlas = result.Atlas.open(atlas_workdir, layer)
  grid = next((g for g in atlas.info["grids"] if g["size"] == size), None)
  if grid is None:
    raise ValueError(f"{atlas.workdir} has no grid of size {size}; it has "
                     f"{[g['size'] for g in atlas.info['grids']]}.")
  folder = atlas.workdir / pathlib.Path(grid["directions"]).parent
  cells = readers.read_dictionary_labels(folder / LABELS_FILE)["cells"]
  with Image.open(atlas.workdir / grid["atlas"]) as image:
    cell = max(image.width // size, LABELLED_CELL_PX)
    image = image.convert("RGB").resize((cell * size, cell * size), Image.NEAREST)
  draw = ImageDraw.Draw(image)
  font = ImageFont.load_default(size=max(8, cell // 4))
  band = cell // 4 + 2
  for c in cells:
    if c["features"]:
      left, bottom = c["x"] * cell, (c["y"] + 1) * cell
      draw.rectangle((left, bottom - band, left + cell - 1, bottom - 1), fill=LABEL_BAND)
      draw.text((left + 2, bottom - band + 1), f"f{c['features'][0]['feature']}",
                fill=LABEL_TEXT, font=font)
  path = folder / LABELLED_ATLAS
  workdir_lib.save_image(path, image, quality=site.JPEG_QUALITY)
  return path
