"""Every script on every model: EfficientNet-Lite0 through the scripts' path.

A tiny EfficientNet-Lite0 atlas is built by ``experiments/atlas.py``'s
``main`` (4 photos × 2 crops at 96 px, one 2×2 grid, 4 steps): defaults
that used to assume GoogLeNet (layer, input size, UMAP preset) come from the
model's metadata, the resolved configuration is written next to the outputs,
and the work directory refuses runs with other settings, naming the keys.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax import models
from atlasjax.atlas import result as result_lib
from atlasjax.classic import attribution

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"



def test_efficientnet_atlas_through_the_scripts(run_script, tmp_path, four_photos):
  work = tmp_path / "work"
  common = ["--model=efficientnet_lite0", f"--images={four_photos}",
            f"--workdir={work}", "--crops_per_image=2", "--image_size=96",
            "--n_neighbors=4", "--icon_size=32", "--steps=4", "--noviewer"]
  # A grid the data cannot fill is one line, and leaves the collection.
  r = run_script("atlas", *common, "--grid_sizes=40", "--min_density=6")
  assert r.code == 2 and "Traceback" not in r.err, r
  assert "40×40" in r.error_lines[0] and "--min_density" in r.error_lines[0]
  assert (work / "collect").is_dir()
  # The corrected run resumes the same work directory (the grid was never built).
  r = run_script("atlas", *common, "--grid_sizes=2", "--min_density=0")
  assert r.code == 0, r
  atlas = json.loads((work / "atlas.json").read_text())
  assert atlas["model"] == "efficientnet_lite0"
  assert atlas["layer"] == models.get("efficientnet_lite0").default_layer
  assert atlas["grids"][0]["size"] == 2 and atlas["grids"][0]["cells"]
  config = json.loads((work / "run_config.json").read_text())
  assert config["model"] == "efficientnet_lite0"
  assert config["collect"]["layers"] == ["block5"]
  assert config["collect"]["image_size"] == 96
  assert config["atlas"]["steps"] == 4 and config["atlas"]["grid_sizes"] == [2]
  assert sorted(config["built"]) == ["atlas", "collect", "layout"]
  # block5 has stride 16: the deep-layer UMAP preset (cosine), from metadata.
  layout = json.loads((work / "layout" / "layout.json").read_text())
  assert layout["umap"]["metric"] == "cosine"
  shown = result_lib.Atlas.open(work)
  assert shown._repr_png_().startswith(PNG_SIGNATURE)
  # Other settings, another model or layer: refused, keys named, nothing lost.
  before = sorted(p.name for p in work.iterdir())
  line = run_script("atlas", *common, "--grid_sizes=2", "--min_density=0",
                    "--steps=5").error_lines[0]
  assert "atlas.steps = 4 there, 5 now" in line, line
  line = run_script("atlas", *[a for a in common if "model" not in a],
                    "--grid_sizes=2", "--min_density=0").error_lines[0]
  # Named by the collection's own check (it runs before anything is written).
  assert "efficientnet_lite0" in line and "bvlc_googlenet" in line, line
  line = run_script("atlas", *common, "--layers=block4", "--grid_sizes=2",
                    "--min_density=0").error_lines[0]
  assert "block5" in line and "block4" in line, line
  assert sorted(p.name for p in work.iterdir()) == before


def test_efficientnet_grad_cam_equals_cam_at_its_cam_layer():
  model, params = models.load("efficientnet_lite0")
  images = jax.random.uniform(jax.random.PRNGKey(0), (2, 96, 96, 3))
  classes = jnp.array([1, 409])
  cam = attribution.model_cam(model, params, images, classes)
  grad_cam = attribution.grad_cam(model, params, images, classes, model.cam_layer)
  assert float(grad_cam.max()) > 0   # not vacuously equal
  # GAP + linear head: Grad-CAM's weights are the class's kernel column / HW.
  np.testing.assert_allclose(attribution.normalize_map(grad_cam),
                             attribution.normalize_map(cam), atol=1e-5)
