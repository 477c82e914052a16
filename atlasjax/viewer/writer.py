"""Writes the static, offline atlas viewer for a work directory.

Reads ``<workdir>/atlas.json`` (and any ``other_layers``), validates it and
emits::

  <workdir>/index.html                 the page (open from disk or serve)
  <workdir>/viewer/viewer.js, .css     the hand-written viewer (package data)
  <workdir>/viewer/data/atlas.js       window.ATLAS_DATA: layers, grids, names
  <workdir>/viewer/data/L<l>_g<n>_cells.js       cells of one grid (lazy)
  <workdir>/viewer/data/L<l>_g<n>_attr<k>.js     int8 class-score chunks (lazy)
  <workdir>/viewer/thumbs/<hash>.jpg   thumbnails of the nearest examples

Data are JavaScript files loaded with ``<script>`` tags rather than JSON read
with ``fetch()``, because pages opened from ``file://`` may not fetch.  The
icons are referenced in place (relative URLs), never copied.

Shading by class and the cells' listed top classes use one ranking: a grid's
``class_scores`` (class support, see :mod:`atlasjax.atlas.grid`) when
atlas.json names them, else its mean ``attributions``.

A grid labelled by a sparse dictionary
(:func:`atlasjax.microscope.dictionary.label_atlas` leaves
``dictionary_labels.json`` beside the grid's ``directions``) also shows each
cell's strongest dictionary features, linked to their feature pages when those
were written (the folder the labels file names).

Every URL that reaches the page is a path inside the work directory, each
segment percent-encoded but for allow-listed characters
(:func:`atlasjax.workdir.url_path`): a crafted ``atlas.json`` or labels file
cannot put a ``javascript:`` link or an absolute path on the page, and files
outside the work directory (after following symlinks) are refused, as are
example ids that leave ``images_root`` (thumbnails are made only of photos
under it) and class-name files outside the atlas's folder. The viewer's
folders are written and cleared only inside the work directory: a symlinked
``viewer/`` is refused, never followed.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import math
import os
import pathlib
from typing import Any

import numpy as np

from atlasjax import readers
from atlasjax import workdir as workdir_lib

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
SCHEMA_VERSION = 1
# Classes per attribution chunk file: a class search loads one chunk.
CLASSES_PER_CHUNK = 64
# A grid's dictionary-feature labels, beside its directions file.
DICTIONARY_LABELS_FILE = "dictionary_labels.json"


class AtlasFormatError(readers.FileFormatError):
  """atlas.json is malformed or names files that do not exist."""


@dataclasses.dataclass
class _Layer:
  json_path: pathlib.Path
  spec: dict


def _load_json(path: pathlib.Path, what: str) -> Any:
  if not path.is_file():
    raise AtlasFormatError(f"{what} not found: {path}")
  try:
    return readers.read_json(path, fix=readers.ATLAS_FIX)
  except readers.FileFormatError as e:
    raise AtlasFormatError(f"{what}: {e}") from None


def _req(d: dict, key: str, where: str, types=None):
  if not isinstance(d, dict) or key not in d:
    raise AtlasFormatError(f"{where}: missing required key {key!r}")
  v = d[key]
  if types is not None and not isinstance(v, types):
    raise AtlasFormatError(f"{where}: {key!r} must be {types}, got "
                           f"{type(v).__name__}")
  return v


def _file(base: pathlib.Path, rel: str, where: str) -> pathlib.Path:
  if not isinstance(rel, str) or not rel:
    raise AtlasFormatError(f"{where}: expected a relative path, got {rel!r}")
  p = (base / rel)
  if not p.is_file():
    raise AtlasFormatError(f"{where}: file not found: {p}")
  return p


def _plain_relative(name: Any) -> bool:
  """Whether an example id names a file under ``images_root`` (relative,
  no ``..``): thumbnails are made of the collected photos, nothing else."""
  if not isinstance(name, str) or not name or "\0" in name:
    return False
  parts = pathlib.PurePosixPath(name).parts
  return not name.startswith(("/", "\\")) and ".." not in parts and "\\" not in name


def load_atlas(workdir: str | os.PathLike) -> list[_Layer]:
  """Reads and validates ``atlas.json`` plus its ``other_layers``.

  Raises :class:`AtlasFormatError` naming the offending key or missing file.
  """
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise AtlasFormatError(f"work directory not found: {workdir}")
  main = workdir / "atlas.json"
  layers = [_Layer(main, _load_json(main, "atlas.json"))]
  for rel in layers[0].spec.get("other_layers") or []:
    p = main.parent / rel
    layers.append(_Layer(p, _load_json(p, f"other layer {rel!r}")))
  for layer in layers:
    _validate(layer)
  return layers


def _validate(layer: _Layer):
  spec, base = layer.spec, layer.json_path.parent
  w = str(layer.json_path)
  if not isinstance(spec, dict):
    raise AtlasFormatError(f"{w}: top level must be an object")
  version = spec.get("version", SCHEMA_VERSION)
  if version != SCHEMA_VERSION:
    raise AtlasFormatError(f"{w}: unsupported version {version!r} "
                           f"(viewer reads version {SCHEMA_VERSION})")
  _req(spec, "layer", w, str)
  if spec.get("class_names") is not None:
    _file(base, spec["class_names"], f"{w}: class_names")
  layout = spec.get("layout")
  if layout is not None:
    if not isinstance(layout, dict):
      raise AtlasFormatError(f"{w}: 'layout' must be an object")
    if layout.get("scatter"):
      _file(base, layout["scatter"], f"{w}: layout.scatter")
  grids = _req(spec, "grids", w, list)
  if not grids:
    raise AtlasFormatError(f"{w}: 'grids' is empty")
  sizes = set()
  for gi, g in enumerate(grids):
    gw = f"{w}: grids[{gi}]"
    size = _req(g, "size", gw, int)
    if size <= 0 or size in sizes:
      raise AtlasFormatError(f"{gw}: size {size} is invalid or repeated")
    sizes.add(size)
    icon_size = _req(g, "icon_size", gw, int)
    if icon_size <= 0:
      raise AtlasFormatError(f"{gw}: icon_size must be positive")
    if g.get("attributions"):
      _file(base, g["attributions"], f"{gw}: attributions")
    if g.get("class_scores"):
      _file(base, g["class_scores"], f"{gw}: class_scores")
    cells = _req(g, "cells", gw, list)
    seen = set()
    for ci, c in enumerate(cells):
      cw = f"{gw}.cells[{ci}]"
      x, y = _req(c, "x", cw, int), _req(c, "y", cw, int)
      if not (0 <= x < size and 0 <= y < size):
        raise AtlasFormatError(f"{cw}: ({x}, {y}) outside the {size}x{size} grid")
      if (x, y) in seen:
        raise AtlasFormatError(f"{cw}: cell ({x}, {y}) listed twice")
      seen.add((x, y))
      _req(c, "count", cw, (int, float))
      _file(base, _req(c, "icon", cw, str), f"{cw}: icon")
      if not isinstance(c.get("top_classes", []), list) or not isinstance(
          c.get("examples", []), list):
        raise AtlasFormatError(f"{cw}: top_classes/examples must be lists")


# ---------------------------------------------------------------------------
def _url(path: pathlib.Path, workdir: pathlib.Path) -> str:
  """``path`` as a URL relative to the page: inside the work directory
  (symlinks followed), allow-listed characters only."""
  rel = pathlib.PurePath(os.path.relpath(path.resolve(), workdir.resolve())).as_posix()
  if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
    raise AtlasFormatError(f"{path} is outside the work directory {workdir}; "
                           "a viewer links only files inside it.")
  return workdir_lib.url_path(rel)


def _inside(path: pathlib.Path, root: pathlib.Path, what: str) -> pathlib.Path:
  real, top = path.resolve(), root.resolve()
  if real != top and top not in real.parents:
    raise AtlasFormatError(f"{what} {path} is outside {root}; refusing to read it "
                           "into a published viewer.")
  return path


def _js(var_call: str, payload: Any) -> str:
  return var_call.replace("%s", json.dumps(payload, separators=(",", ":"),
                                           allow_nan=False)) + "\n"


def _thumb(src: pathlib.Path, dst: pathlib.Path, size: int) -> bool:
  """A centre-cropped JPEG thumbnail, written atomically (present = complete)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if dst.is_file():
    return True
  try:
    with Image.open(src) as im:
      im.draft("RGB", (size * 2, size * 2))  # fast JPEG DCT downscale
      im = im.convert("RGB")
      side = min(im.size)
      left, top = (im.width - side) // 2, (im.height - side) // 2
      im = im.crop((left, top, left + side, top + side)).resize(
          (size, size), Image.BILINEAR)
      workdir_lib.save_image(dst, im, "JPEG", quality=80)
    return True
  except (OSError, ValueError, SyntaxError):
    return False


def _quantise_attr(attr: np.ndarray):
  """[rows, classes] float -> (int8 [classes, rows], per-class scale)."""
  a = np.nan_to_num(np.asarray(attr, np.float32))
  scale = np.abs(a).max(axis=0) / 127.0
  scale[scale == 0] = 1.0
  q = np.clip(np.round(a / scale), -127, 127).astype(np.int8)
  return np.ascontiguousarray(q.T), scale


@dataclasses.dataclass
class _Writer:
  """State of one viewer write: where files go and what is shared by layers."""
  workdir: pathlib.Path
  data_dir: pathlib.Path
  thumbs_dir: pathlib.Path
  thumb_size: int
  examples_per_cell: int
  name_lists: list = dataclasses.field(default_factory=list)
  name_paths: dict = dataclasses.field(default_factory=dict)
  thumb_ok: dict = dataclasses.field(default_factory=dict)

  def class_names(self, spec: dict, base: pathlib.Path) -> int:
    """Index into ``name_lists`` of the layer's class names: the listed file,
    else whatever the cells name."""
    if spec.get("class_names"):
      p = _inside(base / spec["class_names"], self.workdir, "class_names").resolve()
      if p not in self.name_paths:
        names = _load_json(p, "class_names")
        if not isinstance(names, list):
          raise AtlasFormatError(f"{p}: class names must be a JSON list")
        self.name_paths[p] = len(self.name_lists)
        self.name_lists.append([str(n) for n in names])
      return self.name_paths[p]
    found: dict[int, str] = {}
    for g in spec["grids"]:
      for c in g["cells"]:
        for t in c.get("top_classes", []):
          found[int(t["index"])] = str(t.get("name", t["index"]))
    n = max(found, default=-1) + 1
    self.name_lists.append([found.get(i, str(i)) for i in range(n)])
    return len(self.name_lists) - 1

  def thumbs(self, images_root: pathlib.Path | None, examples) -> tuple[list, list]:
    """Thumbnail stems and names of a cell's first readable examples."""
    ex, names = [], []
    for eid in examples[:self.examples_per_cell]:
      key = (str(images_root), eid)
      if key not in self.thumb_ok:
        self.thumb_ok[key] = None
        if (images_root is not None and _plain_relative(eid)
            and images_root.resolve() in (images_root / eid).resolve().parents):
          stem = hashlib.sha1(f"{images_root}/{eid}".encode()).hexdigest()[:20]
          if _thumb(images_root / eid, self.thumbs_dir / f"{stem}.jpg",
                    self.thumb_size):
            self.thumb_ok[key] = stem
      if self.thumb_ok[key]:
        ex.append(self.thumb_ok[key])
        names.append(str(eid))
    return ex, names

  def cell_columns(self, cells, base: pathlib.Path, images_root) -> dict:
    """The grid's cells as columns (row-major order), thumbnails made."""
    cols: dict[str, list] = {k: [] for k in
                             ("x", "y", "count", "dir", "icon", "top", "ex",
                              "exNames")}
    for c in sorted(cells, key=lambda c: (c["y"], c["x"])):
      cols["x"].append(c["x"])
      cols["y"].append(c["y"])
      cols["count"].append(c["count"])
      cols["dir"].append(int(c.get("direction", -1)))
      cols["icon"].append(_url(base / c["icon"], self.workdir))
      top = []
      for t in c.get("top_classes", [])[:5]:
        a = float(t.get("score", t.get("attribution", 0.0)))
        top.append([int(t["index"]), float(f"{a:.4g}") if math.isfinite(a) else 0.0])
      cols["top"].append(top)
      ex, ex_names = self.thumbs(images_root, c.get("examples", []))
      cols["ex"].append(ex)
      cols["exNames"].append(ex_names)
    return cols

  def feature_label(self, f: Any, folder: pathlib.Path | None, where: str) -> list:
    """``[feature, code, page, image]`` of one label, checked: an integer
    feature, a finite code, links only to pages inside the work directory."""
    feature, code = (f.get("feature"), f.get("code")) if isinstance(f, dict) else (None, None)
    if (isinstance(feature, bool) or not isinstance(feature, int) or feature < 0
        or isinstance(code, bool) or not isinstance(code, (int, float))
        or not math.isfinite(code)):
      raise AtlasFormatError(f"{where}: a label must be {{'feature': int >= 0, "
                             f"'code': finite number}}, got {f!r}")
    page = folder / f"f{feature}.html" if folder is not None else None
    known = page is not None and page.is_file()
    return [feature, float(f"{code:.4g}"),
            _url(page, self.workdir) if known else None,
            _url(page.with_suffix(".png"), self.workdir) if known else None]

  def feature_labels(self, g: dict, base: pathlib.Path, cols: dict) -> bool:
    """Adds the ``feat`` column (``[feature, code, page, image]`` per label,
    strongest first) from the grid's dictionary labels; False if it has none.
    ``page``/``image`` are the feature page and render when they exist."""
    if not g.get("directions"):
      return False
    path = base / pathlib.PurePath(g["directions"]).parent / DICTIONARY_LABELS_FILE
    if not path.is_file():
      return False
    labels = _load_json(path, "dictionary labels")
    by_xy = {(c.get("x"), c.get("y")): _req(c, "features", str(path), list)
             for c in _req(labels, "cells", str(path), list)}
    pages = labels.get("pages")
    if pages is not None and not isinstance(pages, str):
      raise AtlasFormatError(f"{path}: 'pages' must be a relative folder or null")
    folder = (path.parent / pages) if pages else None
    cols["feat"] = [[self.feature_label(f, folder, str(path))
                     for f in by_xy.get((x, y), [])]
                    for x, y in zip(cols["x"], cols["y"])]
    return True

  def attr_chunks(self, g: dict, base: pathlib.Path, li: int, tag: str,
                  dirs: list[int]) -> tuple[int, int]:
    """Writes the grid's shading scores in class chunks; returns (chunks,
    classes). Shades by the same scores the cells' top classes are ranked by."""
    shade_key = "class_scores" if g.get("class_scores") else "attributions"
    if not g.get(shade_key):
      return 0, 0
    attr = workdir_lib.load_npy(base / g[shade_key])
    if attr.ndim != 2:
      raise AtlasFormatError(f"{base / g[shade_key]}: expected a 2-D "
                             f"[cells, classes] array, got {attr.shape}")
    dirs = [d for d in dirs if d >= 0]
    if dirs and max(dirs) >= attr.shape[0]:
      raise AtlasFormatError(
          f"grid {g['size']}: cell direction {max(dirs)} out of range for "
          f"{shade_key} with {attr.shape[0]} rows")
    q, scale = _quantise_attr(attr)
    n_chunks = 0
    for k, start in enumerate(range(0, q.shape[0], CLASSES_PER_CHUNK)):
      block = q[start:start + CLASSES_PER_CHUNK]
      workdir_lib.write_text(self.data_dir / f"{tag}_attr{k}.js", _js(
          f"AtlasViewer.registerAttr({li},{g['size']},{k},%s);", {
              "start": start, "rows": int(q.shape[1]),
              "scale": [float(s) for s in scale[start:start + len(block)]],
              "data": base64.b64encode(block.tobytes()).decode()}))
      n_chunks += 1
    return n_chunks, q.shape[0]

  def grid(self, g: dict, base: pathlib.Path, li: int, images_root) -> dict:
    """Writes one grid's data files; returns its entry in ``atlas.js``."""
    size, cells = g["size"], g["cells"]
    tag = f"L{li}_g{size}"
    cols = self.cell_columns(cells, base, images_root)
    labelled = self.feature_labels(g, base, cols)
    cells_file = f"{tag}_cells.js"
    workdir_lib.write_text(self.data_dir / cells_file, _js(
        f"AtlasViewer.registerCells({li},{size},%s);", cols))
    n_chunks, _ = self.attr_chunks(g, base, li, tag, cols["dir"])
    return {
        "size": size, "iconSize": g["icon_size"], "nCells": len(cells),
        "maxCount": max([c["count"] for c in cells], default=1) or 1,
        "cells": f"viewer/data/{cells_file}",
        "attr": f"viewer/data/{tag}_attr%d.js" if n_chunks else None,
        "attrChunk": CLASSES_PER_CHUNK, "attrChunks": n_chunks,
        "features": labelled,
        "ranking": g.get("class_ranking") or (
            "support" if g.get("class_scores") else "mean_attribution"),
    }

  def layer(self, li: int, layer: "_Layer") -> dict:
    """Writes one layer's grids; returns its entry in ``atlas.js``."""
    spec, base = layer.spec, layer.json_path.parent
    names_idx = self.class_names(spec, base)
    images_root = spec.get("images_root")
    images_root = pathlib.Path(images_root) if images_root else None
    if images_root is not None and not images_root.is_absolute():
      images_root = base / images_root
    if images_root is not None and not images_root.is_dir():
      images_root = None
    scatter = (spec.get("layout") or {}).get("scatter")
    grids = [self.grid(g, base, li, images_root)
             for g in sorted(spec["grids"], key=lambda g: g["size"])]
    return {"name": spec["layer"], "model": spec.get("model", ""),
            "names": names_idx,
            "scatter": _url(base / scatter, self.workdir) if scatter else None,
            "grids": grids, "thumbs": images_root is not None}


def write_viewer(workdir: str | os.PathLike, *, thumb_size: int = 64,
                 examples_per_cell: int = 6, title: str | None = None
                 ) -> pathlib.Path:
  """(Re)writes the static viewer for ``workdir``; returns its index.html.

  Validates ``atlas.json`` first, then, holding the work directory's lock,
  writes every file atomically: static assets, one data file per grid (and
  shading chunks), thumbnails (kept across rewrites), ``atlas.js`` and the
  page last.

  Args:
    workdir: folder holding ``atlas.json`` (the atlas pipeline's output).
    thumb_size: side in px of the example-image thumbnails.
    examples_per_cell: thumbnails made for the first (nearest) N examples.
    title: page title (default: "<model> <layer> activation atlas").
  """
  workdir = pathlib.Path(workdir)
  layers = load_atlas(workdir)
  out = workdir / "viewer"
  with workdir_lib.lock(workdir):
    writer = _Writer(workdir, out / "data", out / "thumbs", thumb_size,
                     examples_per_cell)
    # Stale chunks of an earlier, different atlas; never through a symlink.
    workdir_lib.remove_tree(writer.data_dir)
    workdir_lib.make_dirs(writer.data_dir)
    workdir_lib.make_dirs(writer.thumbs_dir)
    for name in ("viewer.js", "viewer.css"):
      workdir_lib.write_bytes(out / name, (STATIC_DIR / name).read_bytes())
    meta_layers = [writer.layer(li, layer) for li, layer in enumerate(layers)]
    main = layers[0].spec
    title = title or " ".join(
        s for s in (main.get("model"), main["layer"], "activation atlas") if s)
    workdir_lib.write_text(writer.data_dir / "atlas.js", _js(
        "window.ATLAS_DATA=%s;", {
            "version": SCHEMA_VERSION, "title": title, "layers": meta_layers,
            "classNames": writer.name_lists, "thumbs": "viewer/thumbs/"}))
    page = (STATIC_DIR / "index.html").read_text().replace(
        "{{TITLE}}", html.escape(title))
    index = workdir / "index.html"
    workdir_lib.write_text(index, page)
  return index
