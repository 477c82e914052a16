"""Writes the static Microscope site from a built work directory.

Like the atlas viewer (:mod:`atlasjax.viewer`), the site is plain files that
open from disk (``file://``) or any static server, with no external request:
data are JavaScript files loaded by ``<script>`` tags (pages opened from disk
may not ``fetch()``), images are PNG/JPEG files beside them::

  <workdir>/index.html
  <workdir>/microscope/microscope.js, microscope.css   (package data)
  <workdir>/microscope/data/index.js                   title, layers
  <workdir>/microscope/data/<layer>.js                 units of one layer
  <workdir>/microscope/img/<layer>/<c>.png             feature visualizations
  <workdir>/microscope/img/<layer>/<c>_d<k>.png        diversity renders
  <workdir>/microscope/ex/<layer>/<c>_<rank>.jpg       dataset-example crops

Pages are addressed by the URL hash: ``#/layer/mixed3a`` (the grid of every
unit of a layer) and ``#/unit/mixed3a/17`` (one unit: its visualization,
diversity renders, dataset examples, and its strongest inputs and outputs,
each a link to that unit's page with its expanded-weight kernel drawn red
(positive) / blue (negative)). The search box takes ``layer:channel`` or a
channel of the current layer.

When dictionary feature pages (:mod:`atlasjax.microscope.dictionary`) exist
in the same work directory, ``<workdir>/dictionary/<layer>/links.json``
lists, per unit, the dictionary features whose decoder rows weigh most on
that channel; each unit page shows them, linked to their feature pages.
Whichever is written second adds the links: :func:`write_site` reads the
file, and the dictionary pages call :func:`add_feature_links` on a site
already there.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import os
import pathlib
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from atlasjax import circuits
from atlasjax import plotting
from atlasjax import workdir as workdir_lib
from atlasjax.classic import examples as examples_lib

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
SITE_DIR = "microscope"
# Decimal places of the kernel values written for the heat maps.
KERNEL_DECIMALS = 4
JPEG_QUALITY = 85
# Where the dictionary feature pages of a layer live, relative to the work
# directory, and the per-unit feature list they leave for the site.
FEATURE_PAGES_DIR = "dictionary"
FEATURE_LINKS_FILE = "links.json"
_LAYER_CALL = "Microscope.addLayer(%s);"
# A layer name as a URL path (each segment percent-encoded but for allow-listed
# characters): in the unit hash (#/unit/<layer>/<c>) and in image and script URLs.
url_path = workdir_lib.url_path


def _js(call: str, payload) -> str:
  return call.replace("%s", json.dumps(payload, separators=(",", ":"),
                                       allow_nan=False)) + "\n"


def feature_links_path(workdir: os.PathLike | str, layer: str) -> pathlib.Path:
  """``<workdir>/dictionary/<layer>/links.json``: a layer's unit -> features."""
  return pathlib.Path(workdir) / FEATURE_PAGES_DIR / layer / FEATURE_LINKS_FILE


def unit_feature_links(workdir: os.PathLike | str, layer: str) -> list | None:
  """Per unit, ``[feature, weight, page, image]`` of its strongest features.

  ``page`` and ``image`` are URLs relative to ``<workdir>/index.html``
  (``None`` for a feature whose page was not written). Returns ``None``
  when the layer has no dictionary pages.
  """
  path = feature_links_path(workdir, layer)
  if not path.is_file():
    return None
  data = workdir_lib.read_json(path)
  folder = f"{FEATURE_PAGES_DIR}/{url_path(layer)}"
  pages = {int(f) for f in data["pages"]}
  return [[[int(f), float(w), f"{folder}/f{int(f)}.html" if f in pages else None,
            f"{folder}/f{int(f)}.png" if f in pages else None] for f, w in unit]
          for unit in data["units"]]


def add_feature_links(workdir: os.PathLike | str, layer: str) -> bool:
  """Adds the dictionary feature links to an already written site layer.

  Rewrites ``microscope/data/<layer>.js`` (atomically) with every unit's
  ``f`` list from :func:`unit_feature_links`. Returns ``False`` (writing
  nothing) when the work directory has no site for ``layer``.
  """
  script = pathlib.Path(workdir) / SITE_DIR / "data" / f"{layer}.js"
  links = unit_feature_links(workdir, layer)
  if not script.is_file() or links is None:
    return False
  prefix, suffix = _LAYER_CALL.split("%s")
  data = json.loads(script.read_text().strip()[len(prefix):-len(suffix)])
  if len(links) != len(data["units"]):
    raise ValueError(
        f"{feature_links_path(workdir, layer)} lists {len(links)} units; the "
        f"site's {layer} has {len(data['units'])}: the dictionary was not "
        f"trained on this layer.")
  for unit, features in zip(data["units"], links):
    unit["f"] = features
  workdir_lib.write_text(script, _js(_LAYER_CALL, data))
  return True


def layer_data_path(workdir: os.PathLike | str, layer: str) -> pathlib.Path:
  """``<workdir>/microscope/data/<layer>.js``: the data file of a site layer."""
  return pathlib.Path(workdir) / SITE_DIR / "data" / f"{layer}.js"


def read_layer_data(workdir: os.PathLike | str, layer: str) -> dict | None:
  """The payload of a written site layer (``None`` when there is none)."""
  script = layer_data_path(workdir, layer)
  if not script.is_file():
    return None
  prefix, suffix = _LAYER_CALL.split("%s")
  return json.loads(script.read_text().strip()[len(prefix):-len(suffix)])


def write_layer_data(workdir: os.PathLike | str, layer: str, data: dict) -> None:
  """Rewrites a site layer's data file (atomically) with ``data``."""
  workdir_lib.write_text(layer_data_path(workdir, layer), _js(_LAYER_CALL, data))


def _save_png(image: np.ndarray, path: pathlib.Path) -> None:
  if not path.is_file():   # Written atomically: present means complete.
    workdir_lib.save_image(path, Image.fromarray(np.asarray(image, np.uint8)))


def _links(weights: np.ndarray, unit: int, k: int, other: str, inputs: bool):
  """Strongest inputs (or outputs) of ``unit`` as site records."""
  ranked = (circuits.strongest_inputs(weights, unit, k) if inputs
            else circuits.strongest_outputs(weights, unit, k))
  out = {}
  for sign, key in (("positive", "p"), ("negative", "n")):
    rows = []
    for c, norm in ranked[sign]:
      kernel = weights[unit, :, :, c] if inputs else weights[c, :, :, unit]
      rows.append([other, c, round(norm, KERNEL_DECIMALS), list(kernel.shape),
                   [round(float(v), KERNEL_DECIMALS) for v in kernel.ravel()]])
    out[key] = rows
  return out


@dataclasses.dataclass
class _Site:
  """One site write: the work directory, settings and shared inputs."""
  model: Any
  config: Any
  workdir: pathlib.Path
  out: pathlib.Path
  weights: dict
  paths: Sequence[str]
  crops: dict
  load: Callable

  def example_tiles(self, layer: str, c: int, top: dict, ex_dir: pathlib.Path
                    ) -> list:
    """``[url, score, file name]`` of unit ``c``'s dataset examples, each crop
    written once (atomically) as a JPEG tile."""
    info, out = self.model.layer(layer), []
    for rank, (i, score, pos) in enumerate(zip(
        top["images"][c], top["scores"][c], top["positions"][c])):
      if i < 0:
        continue
      name = f"{c}_{rank}.jpg"
      target = ex_dir / name
      if not target.is_file():
        image = self.load(self.paths[int(i)])
        if layer in self.crops:
          t, l, side = examples_lib.crop_box(pos, info.stride, self.crops[layer],
                                             image.shape[:2])
          image = image[t:t + side, l:l + side]
        tile = plotting.to_uint8(plotting.resize(
            image, (self.config.tile, self.config.tile)))
        workdir_lib.save_image(target, Image.fromarray(tile), quality=JPEG_QUALITY)
      out.append([f"ex/{url_path(layer)}/{name}", round(float(score), 3),
                  os.path.basename(self.paths[int(i)])])
    return out

  def layer(self, layer: str) -> dict:
    """Writes one layer's images and data file; returns its index entry."""
    from atlasjax.microscope import pipeline  # pylint: disable=g-import-not-at-top
    info = self.model.layer(layer)
    rendered = layer in self.config.layers
    renders = pipeline.load_renders(self.workdir, layer) if rendered else {}
    diverse = (pipeline.load_renders(self.workdir, layer, "diversity")
               if rendered else {})
    img_dir = workdir_lib.make_dirs(self.out / "img" / layer)
    ex_dir = workdir_lib.make_dirs(self.out / "ex" / layer)
    url = url_path(layer)
    ex_file = self.workdir / "examples" / f"{layer}.npz"
    top = (dict(np.load(ex_file, allow_pickle=False)) if ex_file.is_file()
           else None)
    incoming = [(a, w) for (a, b), w in self.weights.items() if b == layer]
    outgoing = [(b, w) for (a, b), w in self.weights.items() if a == layer]
    features = unit_feature_links(self.workdir, layer) or [[]] * info.depth
    if len(features) != info.depth:
      raise ValueError(
          f"{feature_links_path(self.workdir, layer)} lists {len(features)} units; "
          f"{layer} has {info.depth}: rewrite the dictionary pages with a "
          f"dictionary of this layer, or delete that folder.")
    units = []
    for c in range(info.depth):
      unit = {"v": None, "d": [], "ex": [], "in": {}, "out": {},
              "f": features[c]}
      if c in renders:
        _save_png(renders[c], img_dir / f"{c}.png")
        unit["v"] = f"img/{url}/{c}.png"
      for k, image in enumerate(diverse.get(c, ())):
        _save_png(image, img_dir / f"{c}_d{k}.png")
        unit["d"].append(f"img/{url}/{c}_d{k}.png")
      if top is not None:
        unit["ex"] = self.example_tiles(layer, c, top, ex_dir)
      for a, w in incoming:
        unit["in"] = _links(w, c, self.config.links, a, inputs=True)
      for b, w in outgoing:
        unit["out"] = _links(w, c, self.config.links, b, inputs=False)
      units.append(unit)
    script = self.out / "data" / f"{layer}.js"
    workdir_lib.make_dirs(script.parent)  # module paths: "block1/attn"
    workdir_lib.write_text(script, _js(
        _LAYER_CALL,
        {"name": layer, "depth": info.depth, "stride": info.stride,
         "rendered": rendered, "crop": self.crops.get(layer), "units": units}))
    return {"name": layer, "depth": info.depth, "rendered": rendered}


def write_site(model, config, workdir: os.PathLike | str, layers, weights: dict,
               paths, *, crops: dict | None = None,
               image_root: os.PathLike | str | None = None,
               title: str | None = None) -> pathlib.Path:
  """Writes ``index.html`` and ``microscope/`` for a built work directory.

  Every file is written atomically; images already there are kept (they are
  complete, and a resumed site does not redo them).

  Args:
    model: the model (layer metadata only).
    config: the :class:`~atlasjax.microscope.pipeline.MicroscopeConfig`.
    workdir: the work directory (renders, examples, weights).
    layers: site layers (rendered layers and their neighbours).
    weights: ``{(A, B): [C_b, kh, kw, C_a]}`` expanded weights.
    paths: the image paths the examples index.
    crops: side in input px of each layer's example crop (default: the
      whole image).
    image_root: shown on the page as the examples' source.
    title: page title.
  """
  from atlasjax.microscope import pipeline  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
  out = workdir / SITE_DIR
  data_dir = out / "data"
  workdir_lib.remove_tree(data_dir)   # stale layers of an earlier site
  workdir_lib.make_dirs(data_dir)
  for name in ("microscope.js", "microscope.css"):
    workdir_lib.write_bytes(out / name, (STATIC_DIR / name).read_bytes())
  site = _Site(model, config, workdir, out, weights, paths, crops or {},
               functools.lru_cache(maxsize=256)(pipeline.example_loader(model)))
  meta = [site.layer(layer) for layer in layers]
  title = title or f"{model.name} microscope"
  workdir_lib.write_text(data_dir / "index.js", _js("window.MICROSCOPE_INDEX=%s;", {
      "title": title, "model": model.name, "layers": meta,
      "size": config.size, "steps": config.steps,
      "images": str(image_root) if image_root else None}))
  scripts = "\n".join(
      f'<script src="{SITE_DIR}/data/{url_path(m["name"])}.js"></script>'
      for m in meta)
  page = (STATIC_DIR / "index.html").read_text()
  page = page.replace("{{TITLE}}", html.escape(title)).replace(
      "{{LAYER_SCRIPTS}}", scripts)
  index = workdir / "index.html"
  workdir_lib.write_text(index, page)
  return index
