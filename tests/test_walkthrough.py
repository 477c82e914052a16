"""docs/walkthrough.py (the README's notebook walk-through) runs top to bottom.

It is a percent-format notebook: plain Python with ``# %%`` cell markers, so
the test runs it with runpy and needs no notebook dependencies (nbclient,
nbformat, a kernel). The last cell's value, the atlas, shows as a PNG.
"""

import pathlib
import runpy

REPO = pathlib.Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_walkthrough_runs_and_its_results_display(data_root):
  namespace = runpy.run_path(str(REPO / "docs" / "walkthrough.py"))
  rendered, atlas = namespace["rendered"], namespace["atlas"]
  assert rendered.images.shape[0] == 4
  assert rendered._repr_png_().startswith(PNG_SIGNATURE)
  assert atlas._repr_png_().startswith(PNG_SIGNATURE)
  assert atlas.grid_sizes == (2,) and atlas.grid()["cells"]
  assert (atlas.workdir / "run_config.json").exists()
