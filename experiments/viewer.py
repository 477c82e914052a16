r"""(Re)writes the static atlas viewer for an existing work directory.

  python experiments/viewer.py --workdir=/path/to/atlas_workdir
  python experiments/viewer.py --workdir=DIR --screenshot=docs/viewer.png
  python experiments/viewer.py --workdir=/tmp/synth --synthetic \
      --screenshot=docs/viewer.png     # synthetic atlas (README picture)

Then open DIR/index.html in a browser, or `python -m http.server -d DIR`.
Prints a final JSON line {"index", "screenshot"}.
"""

import json

from absl import app
from absl import flags

from atlasjax import viewer
from atlasjax.viewer import synthetic

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder holding atlas.json.")
_SCREENSHOT = flags.DEFINE_string(
    "screenshot", None, "Also save a headless-Chromium PNG of the viewer here.")
_SYNTHETIC = flags.DEFINE_bool(
    "synthetic", False, "First write a synthetic atlas into --workdir.")
_SIZES = flags.DEFINE_list("sizes", ["20", "40", "80"],
                           "Grid sizes of the --synthetic atlas.")
_SEARCH = flags.DEFINE_string("search", None,
                              "Screenshot: shade by this class name.")
_ZOOM = flags.DEFINE_float("zoom", None, "Screenshot: zoom factor.")
_HOVER = flags.DEFINE_list("hover", None, "Screenshot: hover cell X,Y.")
_WIDTH = flags.DEFINE_integer("width", 1280, "Screenshot width (CSS px).")
_HEIGHT = flags.DEFINE_integer("height", 800, "Screenshot height (CSS px).")
flags.mark_flag_as_required("workdir")


def main(argv):
  del argv
  if _SYNTHETIC.value:
    synthetic.make_workdir(_WORKDIR.value, sizes=[int(s) for s in _SIZES.value],
                           icon_size=48, n_points=20000,
                           layers=("mixed4c", "mixed5b"))
  index = viewer.write_viewer(_WORKDIR.value)
  shot = None
  if _SCREENSHOT.value:
    hover = tuple(int(v) for v in _HOVER.value) if _HOVER.value else None
    shot = str(viewer.screenshot(index, _SCREENSHOT.value, width=_WIDTH.value,
                                 height=_HEIGHT.value, search=_SEARCH.value,
                                 zoom=_ZOOM.value, hover=hover))
  print(json.dumps({"index": str(index), "screenshot": shot}))


if __name__ == "__main__":
  app.run(main)
