r"""Can a cell's top classes be trusted? Cell-label agreement of an atlas.

For each kept cell of each grid: does its top class (top-1) or do its five
top classes (top-5) contain the most common top-1 prediction of the crops
whose vectors fell in the cell? (Every class tied for most common counts.)
Measured for the cell ranking the atlas uses ("support", see
atlasjax/atlas/grid.py) and the plain mean attribution it replaced, each
against the same ranking judged on a different cell's crops (chance), in one
run. Needs only collect + layout (no icons):

  python experiments/collect.py --workdir=W && python experiments/layout.py --workdir=W
  python bench/cell_labels.py --workdir=W [--grid_sizes=10,20 --min_density=6,10]

Also reported: ``example_label_match``, the issue-12 figure (the fraction of
cells where any of the five listed classes is the true label of any of the
cell's eight example photos). Prints one JSON line per grid and ranking
(workload, figures, machine, load).
"""

import json
import os
import pathlib
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import machine  # noqa: E402
from atlasjax.atlas import collect as collect_lib  # noqa: E402
from atlasjax.atlas import grid as grid_lib  # noqa: E402
from atlasjax.atlas import layout as layout_lib  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "workdir/atlas_mixed4c",
                               "Work directory with a collection and a layout.")
_LAYER = flags.DEFINE_string("layer", None, "Layer (default: the first collected).")
_GRIDS = flags.DEFINE_list("grid_sizes", ["10", "20"], "Grid sizes.")
_DENSITY = flags.DEFINE_list("min_density", ["6", "10"],
                             "Kept cells have more samples than this (one per grid).")
_TOP_K = 5


def rankings(grid: grid_lib.Grid) -> dict[str, np.ndarray]:
  return {"support": grid.class_scores, "mean_attribution": grid.attributions}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)   # Orbax logs every shard at INFO.
  workdir = pathlib.Path(_WORKDIR.value)
  collection = collect_lib.Collection.open(workdir)
  layer = collection.check_layer(_LAYER.value or collection.layers[0])
  layout_dir = workdir / layout_lib.LAYOUT_DIR
  if not (layout_dir / "coords.npy").exists():
    sys.exit(f"No layout in {layout_dir}: run experiments/layout.py "
             f"--workdir={workdir} first.")
  if not collection.settings["attributions"]:
    sys.exit(f"{workdir} was collected without attributions; nothing to rank.")
  start = time.perf_counter()
  xy = np.load(layout_dir / "coords.npy")
  outliers_path = layout_dir / layout_lib.OUTLIERS
  outliers = np.load(outliers_path) if outliers_path.exists() else None
  data = collection.load([f"attributions/{layer}", "top_classes", "top_logits",
                          "image_index", "label"])
  vectors = collection.vectors_memmap(layer)
  predictions = data["top_classes"][:, 0]
  sizes = [int(v) for v in _GRIDS.value]
  densities = [int(v) for v in _DENSITY.value]
  if len(densities) == 1:
    densities *= len(sizes)
  for size, density in zip(sizes, densities):
    grid = grid_lib.build_grid(
        xy, vectors, size, density, data[f"attributions/{layer}"],
        exclude=outliers, top_classes=data["top_classes"],
        top_logits=data["top_logits"], image_index=data["image_index"])
    for name, scores in rankings(grid).items():
      result = grid_lib.label_agreement(scores, grid.members, predictions,
                                        k=_TOP_K)
      result["example_label_match"] = float(np.mean([
          bool(set(np.argsort(-s, kind="stable")[:_TOP_K].tolist())
               & set(data["label"][ex].tolist()))
          for s, ex in zip(scores, grid.examples)]))
      print(json.dumps({
          "workload": f"cell labels, {layer}, {size}x{size} grid, "
                      f"min_density {density}, {len(xy)} vectors",
          "ranking": name, **{k: round(v, 4) if isinstance(v, float) else v
                              for k, v in result.items()},
          "outliers": int(outliers.sum()) if outliers is not None else None,
          "seconds": round(time.perf_counter() - start, 2),
          "machine": machine.describe(),
          "loadavg": [round(x, 2) for x in os.getloadavg()]}), flush=True)


if __name__ == "__main__":
  app.run(main)
