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
"""

from __future__ import annotations

import functools
import html
import json
import os
import pathlib
import shutil

import numpy as np
from PIL import Image

from atlasjax import circuits
from atlasjax import plotting
from atlasjax.classic import examples as examples_lib

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
SITE_DIR = "microscope"
# Decimal places of the kernel values written for the heat maps.
KERNEL_DECIMALS = 4
JPEG_QUALITY = 85


def _js(call: str, payload) -> str:
  return call.replace("%s", json.dumps(payload, separators=(",", ":"),
                                       allow_nan=False)) + "\n"


def _save_png(image: np.ndarray, path: pathlib.Path) -> None:
  if not path.is_file():
    Image.fromarray(np.asarray(image, np.uint8)).save(path)


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


def write_site(model, config, workdir: os.PathLike | str, layers, weights: dict,
               paths, *, crops: dict | None = None,
               image_root: os.PathLike | str | None = None,
               title: str | None = None) -> pathlib.Path:
  """Writes ``index.html`` and ``microscope/`` for a built work directory.

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
  if data_dir.is_dir():
    shutil.rmtree(data_dir)   # stale layers of an earlier site
  data_dir.mkdir(parents=True)
  for name in ("microscope.js", "microscope.css"):
    shutil.copyfile(STATIC_DIR / name, out / name)
  crops = crops or {}
  load = functools.lru_cache(maxsize=256)(pipeline.example_loader(model))

  meta = []
  for layer in layers:
    info = model.layer(layer)
    rendered = layer in config.layers
    renders = pipeline.load_renders(workdir, layer) if rendered else {}
    diverse = pipeline.load_renders(workdir, layer, "diversity") if rendered else {}
    img_dir, ex_dir = out / "img" / layer, out / "ex" / layer
    img_dir.mkdir(parents=True, exist_ok=True)
    ex_dir.mkdir(parents=True, exist_ok=True)
    ex_file = workdir / "examples" / f"{layer}.npz"
    top = dict(np.load(ex_file)) if ex_file.is_file() else None
    incoming = [(a, w) for (a, b), w in weights.items() if b == layer]
    outgoing = [(b, w) for (a, b), w in weights.items() if a == layer]
    units = []
    for c in range(info.depth):
      unit = {"v": None, "d": [], "ex": [], "in": {}, "out": {}}
      if c in renders:
        name = f"{c}.png"
        _save_png(renders[c], img_dir / name)
        unit["v"] = f"img/{layer}/{name}"
      for k, image in enumerate(diverse.get(c, ())):
        name = f"{c}_d{k}.png"
        _save_png(image, img_dir / name)
        unit["d"].append(f"img/{layer}/{name}")
      if top is not None:
        for rank, (i, score, pos) in enumerate(zip(
            top["images"][c], top["scores"][c], top["positions"][c])):
          if i < 0:
            continue
          name = f"{c}_{rank}.jpg"
          target = ex_dir / name
          if not target.is_file():
            image = load(paths[int(i)])
            if layer in crops:
              t, l, side = examples_lib.crop_box(pos, info.stride, crops[layer],
                                                 image.shape[:2])
              image = image[t:t + side, l:l + side]
            tile = plotting.to_uint8(plotting.resize(image, (config.tile, config.tile)))
            Image.fromarray(tile).save(target, quality=JPEG_QUALITY)
          unit["ex"].append([f"ex/{layer}/{name}", round(float(score), 3),
                             os.path.basename(paths[int(i)])])
      for a, w in incoming:
        unit["in"] = _links(w, c, config.links, a, inputs=True)
      for b, w in outgoing:
        unit["out"] = _links(w, c, config.links, b, inputs=False)
      units.append(unit)
    script = data_dir / f"{layer}.js"
    script.parent.mkdir(parents=True, exist_ok=True)  # module paths: "block1/attn"
    script.write_text(_js(
        "Microscope.addLayer(%s);",
        {"name": layer, "depth": info.depth, "stride": info.stride,
         "rendered": rendered, "crop": crops.get(layer), "units": units}))
    meta.append({"name": layer, "depth": info.depth, "rendered": rendered})

  title = title or f"{model.name} microscope"
  (data_dir / "index.js").write_text(_js("window.MICROSCOPE_INDEX=%s;", {
      "title": title, "model": model.name, "layers": meta,
      "size": config.size, "steps": config.steps,
      "images": str(image_root) if image_root else None}))
  scripts = "\n".join(
      f'<script src="{SITE_DIR}/data/{html.escape(m["name"])}.js"></script>'
      for m in meta)
  page = (STATIC_DIR / "index.html").read_text()
  page = page.replace("{{TITLE}}", html.escape(title)).replace(
      "{{LAYER_SCRIPTS}}", scripts)
  index = workdir / "index.html"
  index.write_text(page)
  return index
