r"""A full atlas with ``--param=maco`` against the default, on the same cells.

  python experiments/atlas.py --workdir=W_fft
  mkdir W_maco && cp -r W_fft/{collect,layout,run_config.json} W_maco/
  python experiments/atlas.py --workdir=W_maco --param=maco
  python bench/figures/maco_atlas_full.py --workdirs=W_fft,W_maco --grid=10 \
      --out=docs/images/maco_atlas_full.jpg

Collection and layout do not depend on the parameterization, so the second
work directory reuses the first's and both atlases grid the same cells with
the same directions (checked here). For each work directory this reads the
grid's icons in direction order (its finished render chunks), and scores them
with ``render_atlas.icon_fidelity`` (the atlas's own self-retrieval check:
each icon's centre activation against all the grid's directions). One JSON
line per work directory, one for the per-cell comparison, and with ``--out``
a side-by-side crop of the same ``--window`` × ``--window`` cells of each
atlas (the window holding the most cells).
"""

import json
import pathlib
import sys

from absl import app
from absl import flags
import jax.numpy as jnp
import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # bench/
import machine  # noqa: E402  pylint: disable=g-import-not-at-top
from atlasjax import models
from atlasjax.atlas import render_atlas

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Two atlas work directories "
                              "(default parameterization first).", required=True)
_GRID = flags.DEFINE_integer("grid", 10, "Grid size to compare.")
_LAYER = flags.DEFINE_string("layer", "mixed4c", "The atlas layer.")
_WINDOW = flags.DEFINE_integer("window", 4, "Cells per side of the figure's crop.")
_OUT = flags.DEFINE_string("out", None, "JPEG for the side-by-side crop.")
# Gap between the two crops, and the JPEG quality that keeps two 4 × 4 crops
# of 80 px icons under the docs' 150 KB.
GAP = 8
JPEG_QUALITY = 85


def grid_icons(workdir: pathlib.Path, size: int) -> tuple[np.ndarray, np.ndarray]:
  """``(icons [N, S, S, 3] uint8, directions [N, D])`` of one finished grid."""
  gdir = workdir / f"grid_{size}"
  chunk_dirs = sorted(gdir.glob("chunks_*"))
  if len(chunk_dirs) != 1:
    raise SystemExit(f"error: expected one chunks_* folder in {gdir}, found "
                     f"{len(chunk_dirs)}; render the atlas first")
  chunks = sorted(chunk_dirs[0].glob("chunk_*.npy"))
  icons = np.concatenate([np.load(c) for c in chunks])
  return icons, np.load(gdir / "directions.npy")


def densest_window(atlas: np.ndarray, icon: int, window: int) -> tuple[int, int]:
  """Top-left pixel of the ``window``-cell square with the most drawn cells."""
  cells = atlas.shape[0] // icon
  drawn = (atlas.reshape(cells, icon, cells, icon, 3) < 250).any(axis=(1, 3, 4))
  best = max(((drawn[r:r + window, c:c + window].sum(), r, c)
              for r in range(cells - window + 1) for c in range(cells - window + 1)))
  return best[1] * icon, best[2] * icon


def main(argv):
  del argv
  workdirs = [pathlib.Path(w) for w in _WORKDIRS.value]
  model, params = models.load("bvlc_googlenet")
  whitening = np.load(workdirs[0] / "layout" / "whitening.npy")
  loaded = [grid_icons(w, _GRID.value) for w in workdirs]
  if not all(np.array_equal(d, loaded[0][1]) for _, d in loaded):
    raise SystemExit("error: the work directories grid different cells; build "
                     "the second from a copy of the first's collect and layout")
  directions = loaded[0][1]
  own = []
  for workdir, (icons, _) in zip(workdirs, loaded):
    fidelity = render_atlas.icon_fidelity(model, params, _LAYER.value, icons,
                                          directions, whitening)
    cos = per_cell_cosine(model, params, icons, directions, whitening)
    own.append(cos)
    print(json.dumps({"workload": "atlas_full", "workdir": str(workdir),
                      "grid": _GRID.value, **fidelity,
                      "machine": machine.describe()}), flush=True)
  retrieved = [c.argmax(axis=1) == np.arange(len(c)) for c in own]
  diag = [np.diag(c) for c in own]
  print(json.dumps({"workload": "atlas_full_cells", "grid": _GRID.value,
                    "cells": int(len(directions)),
                    "both_retrieved": int((retrieved[0] & retrieved[1]).sum()),
                    "only_first": int((retrieved[0] & ~retrieved[1]).sum()),
                    "only_second": int((~retrieved[0] & retrieved[1]).sum()),
                    "second_cosine_higher": int((diag[1] > diag[0]).sum())}),
        flush=True)
  if _OUT.value:
    save_crops(workdirs, loaded[0][0].shape[1])


def per_cell_cosine(model, params, icons, directions, whitening) -> np.ndarray:
  """``[N, N]`` cosines of each icon's centre activation with every target."""
  # icon_fidelity reports only the summaries; the per-cell comparison needs
  # the matrix, computed the same way (whitened targets, centre position).
  targets = directions @ whitening
  targets /= np.linalg.norm(targets, axis=1, keepdims=True) + 1e-12
  acts = np.asarray(model.apply(params, jnp.asarray(icons, jnp.float32) / 255.0,
                                layers=(_LAYER.value,))[_LAYER.value])
  v = acts[:, acts.shape[1] // 2, acts.shape[2] // 2].astype(np.float64)
  v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
  return v @ targets.T


def save_crops(workdirs, icon: int) -> None:
  atlases = [np.asarray(Image.open(w / f"grid_{_GRID.value}" / "atlas.png").convert("RGB"))
             for w in workdirs]
  top, left = densest_window(atlases[0], icon, _WINDOW.value)
  side = _WINDOW.value * icon
  crops = [a[top:top + side, left:left + side] for a in atlases]
  sheet = np.full((side, 2 * side + GAP, 3), 255, np.uint8)
  sheet[:, :side], sheet[:, side + GAP:] = crops
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(sheet).save(out, quality=JPEG_QUALITY)


if __name__ == "__main__":
  app.run(main)
