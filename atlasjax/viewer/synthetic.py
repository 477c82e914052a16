"""A small synthetic work directory in the atlas.json schema.

Used by the viewer tests, the viewer benchmark and the README screenshot until
a real atlas is at hand.  Points come from a mixture of Gaussian clusters in
the unit square (one cluster per class); icons are Pillow-drawn stripe
patterns whose hue follows the position and whose stripe angle follows the
cell's dominant class, so neighbouring cells look alike, as in a real atlas.
"""

from __future__ import annotations

import colorsys
import os
import pathlib

import numpy as np
from PIL import Image, ImageDraw

from atlasjax import workdir as workdir_lib

# Set in every synthetic atlas.json, so a rerun may replace it and nothing else.
SYNTHETIC_MARK = "synthetic"


class SyntheticError(RuntimeError):
  """The target work directory holds a real atlas (or collection)."""


def _check_target(workdir: pathlib.Path) -> None:
  """Refuses to write over a real atlas: only an earlier synthetic one."""
  atlas = workdir / "atlas.json"
  real = (workdir / "collect").exists()
  if atlas.exists():
    try:
      real = real or not workdir_lib.read_json(atlas).get(SYNTHETIC_MARK)
    except (ValueError, AttributeError):
      real = True
  if real:
    raise SyntheticError(
        f"{workdir} holds a real atlas (atlas.json or collect/ not written by "
        "--synthetic); refusing to overwrite it. Pass another --workdir.")


CLASS_NAMES = (
    "tench", "goldfinch", "tree frog", "jellyfish", "snail", "flamingo",
    "husky", "tabby cat", "ladybug", "monarch", "wok", "volcano", "daisy",
    "lighthouse", "pizza", "snorkel")


def _icon(u: float, v: float, cls: int, n_classes: int, size: int) -> Image.Image:
  yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
  ang = np.pi * cls / n_classes
  stripes = 0.5 + 0.5 * np.sin(22 * (xx * np.cos(ang) + yy * np.sin(ang)))
  blob = np.exp(-((xx ** 2 + yy ** 2) / 0.12) ** 2)
  r, g, b = colorsys.hsv_to_rgb((0.85 * u + 0.15 * v) % 1.0, 0.75, 0.95)
  base = np.array([r, g, b])[None, None]
  img = 1 - blob[..., None] * (1 - base * (0.45 + 0.55 * stripes[..., None]))
  return Image.fromarray((img * 255).astype(np.uint8))


def _write_layout(folder: pathlib.Path, coords: np.ndarray, labels: np.ndarray,
                  n_classes: int) -> None:
  """``layout/``: the coordinates, their classes and a scatter plot."""
  (folder / "layout").mkdir(parents=True, exist_ok=True)
  workdir_lib.save_npy(folder / "layout/coords.npy", coords)
  workdir_lib.save_npy(folder / "layout/top_class.npy", labels.astype(np.int32))
  sc = Image.new("RGB", (400, 400), "white")
  draw = ImageDraw.Draw(sc)
  for (u, v), lab in zip(coords[:4000], labels[:4000]):
    r, g, b = colorsys.hsv_to_rgb(lab / n_classes, 0.8, 0.8)
    px, py = u * 400, (1 - v) * 400
    draw.ellipse((px - 1.5, py - 1.5, px + 1.5, py + 1.5),
                 fill=(int(r * 255), int(g * 255), int(b * 255)))
  workdir_lib.save_image(folder / "layout/scatter.png", sc)


def _write_grid(folder: pathlib.Path, size: int, coords, labels, rng,
                icon_size: int, threshold: int, image_ids, n_classes: int) -> dict:
  """One grid's arrays, icons and atlas image; returns its atlas.json entry."""
  gdir = folder / f"grid_{size}"
  (gdir / "icons").mkdir(parents=True, exist_ok=True)
  gx = np.floor(coords[:, 0] * size).astype(int)
  gy = np.floor((1 - coords[:, 1]) * size).astype(int).clip(0, size - 1)
  flat = gy * size + gx
  counts = np.bincount(flat, minlength=size * size)
  per_class = np.zeros((size * size, n_classes))
  np.add.at(per_class, (flat, labels), 1.0)
  kept = np.flatnonzero(counts >= threshold)
  attr = (per_class[kept] / counts[kept, None]) * 0.2
  attr += rng.normal(0, 0.004, attr.shape)
  workdir_lib.save_npy(gdir / "attributions.npy", attr.astype(np.float16))
  workdir_lib.save_npy(gdir / "directions.npy",
                       rng.normal(size=(len(kept), 8)).astype(np.float32))
  atlas = Image.new("RGB", (size * icon_size,) * 2, "white")
  cells = []
  for d, f in enumerate(kept):
    y, x = divmod(int(f), size)
    top = np.argsort(-attr[d])[:5]
    icon = _icon(x / size, y / size, int(top[0]), n_classes, icon_size)
    rel = f"grid_{size}/icons/{x}_{y}.png"
    workdir_lib.save_image(folder / rel, icon)
    atlas.paste(icon, (x * icon_size, y * icon_size))
    members = np.flatnonzero(flat == f)[:8]
    cells.append({
        "x": x, "y": y, "count": int(counts[f]),
        "top_classes": [{"index": int(t), "name": CLASS_NAMES[t % len(
            CLASS_NAMES)], "attribution": float(attr[d, t])} for t in top],
        "examples": [image_ids[m % len(image_ids)] for m in members]
                    if image_ids else [],
        "icon": rel, "direction": d})
  workdir_lib.save_image(gdir / "atlas.png", atlas)
  return {"size": size, "atlas": f"grid_{size}/atlas.png", "icon_size": icon_size,
          "directions": f"grid_{size}/directions.npy",
          "attributions": f"grid_{size}/attributions.npy", "whitening": None,
          "cells": cells}


def _layer(folder: pathlib.Path, layer: str, sizes, icon_size: int,
           n_points: int, threshold: int, seed: int, images_root, image_ids,
           class_names_rel: str, n_classes: int) -> dict:
  """One synthetic layer: clustered points, their layout and grids."""
  rng = np.random.default_rng(seed)
  centres = rng.uniform(0.12, 0.88, (n_classes, 2))
  labels = rng.integers(0, n_classes, n_points)
  coords = np.clip(centres[labels] + rng.normal(0, 0.09, (n_points, 2)),
                   0, 0.999999).astype(np.float32)
  _write_layout(folder, coords, labels, n_classes)
  grids = [_write_grid(folder, size, coords, labels, rng, icon_size, threshold,
                       image_ids, n_classes) for size in sizes]
  return {"version": 1, "model": "synthetic", "layer": layer,
          "class_names": class_names_rel, "images_root": images_root,
          "layout": {"coords": "layout/coords.npy",
                     "scatter": "layout/scatter.png",
                     "labels": "layout/top_class.npy"},
          "grids": grids}


def make_workdir(workdir: str | os.PathLike, sizes=(20, 40), *,
                 icon_size: int = 32, n_points: int = 6000, threshold: int = 2,
                 layers=("mixed4c",), n_images: int = 24, seed: int = 0
                 ) -> pathlib.Path:
  """Writes a synthetic atlas work directory; returns its path.

  ``layers[0]`` goes to ``<workdir>/atlas.json``, any further layer to
  ``<workdir>/<name>/atlas.json`` listed in ``other_layers``.
  """
  workdir = pathlib.Path(workdir)
  _check_target(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  n_classes = len(CLASS_NAMES)
  workdir_lib.write_json(workdir / "class_names.json", list(CLASS_NAMES),
                         indent=None)
  photos = workdir / "photos"
  photos.mkdir(exist_ok=True)
  rng = np.random.default_rng(seed + 99)
  ids = []
  for i in range(n_images):
    cls = CLASS_NAMES[i % n_classes]
    name = f"n{i:08d}_{cls.replace(' ', '_')}.jpg"
    r, g, b = colorsys.hsv_to_rgb(i / n_images, 0.6, 0.9)
    arr = np.ones((96, 128, 3)) * np.array([r, g, b]) * 255
    arr += rng.normal(0, 25, arr.shape)
    workdir_lib.save_image(photos / name,
                           Image.fromarray(arr.clip(0, 255).astype(np.uint8)),
                           quality=85)
    ids.append(name)
  main = None
  others = []
  for li, layer in enumerate(layers):
    folder = workdir if li == 0 else workdir / layer
    folder.mkdir(parents=True, exist_ok=True)
    rel_names = os.path.relpath(workdir / "class_names.json", folder)
    spec = _layer(folder, layer, sizes, icon_size, n_points, threshold,
                  seed + li, str(photos.resolve()), ids, rel_names, n_classes)
    spec[SYNTHETIC_MARK] = True
    if li == 0:
      main = spec
    else:
      workdir_lib.write_json(folder / "atlas.json", spec, indent=None)
      others.append(f"{layer}/atlas.json")
  if others:
    main["other_layers"] = others
  workdir_lib.write_json(workdir / "atlas.json", main)
  return workdir
