"""Issue 27, item 5: the scripts take your own pieces wherever a built-in goes.

A user's module (written here into a temporary folder on the path) holds a
parameterization, transforms and objective factories that record each call.
``render.py`` renders with them given as registered names and import paths;
an atlas is built through the stage scripts with a registered
parameterization and transforms; then ``render_atlas.py --rerender`` in a
*new process* re-renders its icons with an import-path objective factory
(so the import happens there), and the atlas, its fidelity and run record
follow. Bad names are one ``error:`` line, exit 2, nothing written.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from atlasjax.atlas import icon_objective
from atlasjax.optvis import registry

REPO = pathlib.Path(__file__).resolve().parents[2]
MODULE = "custom_pieces_for_tests"
SOURCE = textwrap.dedent('''
    """A researcher's own pieces (see tests/experiments/test_custom_pieces.py)."""
    import sys

    import jax.numpy as jnp
    from atlasjax.optvis import objectives, param, transform

    # Reached through the module by a string key, so the factories' structural
    # keys (which follow the globals their code names) do not include it.
    calls = []


    def record(*call):
      sys.modules[__name__].__dict__["calls"].append(call)


    def pixel_param(size, batch, *, decorrelate, alpha):
      record("param", size, batch)
      return param.image(size, batch, "pixel", decorrelate, alpha=alpha)


    def jitter_only(size, *, alpha):
      record("transforms", size)
      return transform.jitter(2)


    def roll(size, *, alpha):
      record("transforms", size)
      return lambda key, image: jnp.roll(image, 1, axis=0)


    def push_pull(layer):
      record("objective", layer)
      return lambda c: objectives.channel(layer, c) - objectives.channel(layer, c + 1)


    def icons(layer, *, whitening, cossim_pow):
      record("icons", layer, whitening is not None, cossim_pow)
      return lambda d: objectives.direction_neuron_cossim(
          layer, d, whitening=whitening, cossim_pow=cossim_pow, form="cosine")
''')
COLLECT = ["--layers=conv2d0", "--crops_per_image=1", "--image_size=64",
           "--noattributions", "--shard_images=4"]
ICONS = ["--layers=conv2d0", "--grid_sizes=1", "--min_density=0",
         "--icon_size=34", "--steps=1", "--n_examples=1", "--noviewer"]


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
  """The user's module, importable here and in a child process."""
  folder = tmp_path_factory.mktemp("mylab")
  (folder / f"{MODULE}.py").write_text(SOURCE)
  sys.path.insert(0, str(folder))
  module = __import__(MODULE)
  registry.register_param("tests_pixel", module.pixel_param)
  registry.register_transforms("tests_jitter", module.jitter_only)
  yield folder, module
  sys.path.remove(str(folder))
  sys.modules.pop(MODULE, None)


def test_render_script_takes_registered_and_imported_pieces(run_script, pieces,
                                                           tmp_path):
  _, module = pieces
  out = tmp_path / "out"
  common = ["--size=34", "--steps=2", f"--out={out}"]
  module.calls.clear()
  r = run_script("render", f"--objective={MODULE}:push_pull@conv2d0:0",
                 f"--param={MODULE}:pixel_param", "--transforms=tests_jitter",
                 *common)
  assert r.code == 0, r
  (record,) = json.loads((out / "results.json").read_text())
  assert record["objective"] == f"{MODULE}:push_pull@conv2d0:0"
  assert (out / record["file"]).is_file()
  kinds = {call[0] for call in module.calls}
  assert kinds == {"param", "transforms", "objective"}, module.calls
  assert ("objective", "conv2d0") in module.calls
  for bad, needle in (("--param=watercolour", "register_param"),
                      (f"--transforms={MODULE}:nothing", "no attribute"),
                      ("--objective=no_such@conv2d0:0", "register_objective")):
    flags = [a for a in (f"--objective={MODULE}:push_pull@conv2d0:0", *common)
             if not a.startswith(bad.split("=")[0] + "=")]
    r = run_script("render", *flags, bad, f"--out={tmp_path / 'refused'}")
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert needle in r.error_lines[0] and "Traceback" not in r.err
    assert not (tmp_path / "refused").exists()


def test_atlas_scripts_take_custom_pieces_and_rerender_in_a_new_process(
    run_script, pieces, tmp_path, four_photos, linear_umap):
  folder, module = pieces
  work = tmp_path / "work"
  assert run_script("collect", f"--images={four_photos}", f"--workdir={work}",
                    *COLLECT).code == 0
  assert run_script("layout", f"--workdir={work}", "--layers=conv2d0",
                    "--n_neighbors=2").code == 0
  module.calls.clear()
  r = run_script("render_atlas", f"--workdir={work}", *ICONS,
                 "--param=tests_pixel", "--transforms=tests_jitter")
  assert r.code == 0, r
  assert {c[0] for c in module.calls} == {"param", "transforms"}
  first = json.loads((work / "atlas.json").read_text())
  assert first["config"]["param"] == "tests_pixel"
  # A new process: the import path is all it has of the user's code.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(folder), str(REPO), os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.run(
      [sys.executable, str(REPO / "experiments" / "render_atlas.py"),
       f"--workdir={work}", "--rerender", f"--objective={MODULE}:icons",
       f"--param={MODULE}:pixel_param", "--transforms=none", "--noviewer"],
      env=env, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  atlas = json.loads((work / "atlas.json").read_text())
  described = atlas["config"]["objective"]
  assert described["spec"] == f"{MODULE}:icons" and described["factory"] == "icons"
  # The structural key is the same in this process: a rerun resumes.
  assert icon_objective.describe(f"{MODULE}:icons") == described
  assert atlas["config"]["param"] == f"{MODULE}:pixel_param"
  assert atlas["config"]["steps"] == 1   # the recorded settings kept
  (grid,) = atlas["grids"]
  assert grid["fidelity"]["cells"] == len(grid["cells"]) == 1
  assert grid["fidelity"] != first["grids"][0]["fidelity"]
  recorded = json.loads((work / "run_config.json").read_text())
  assert recorded["atlas"]["objective"] == described
  # The work directory now refuses the old settings, naming the objective.
  r = run_script("render_atlas", f"--workdir={work}", *ICONS, "--transforms=none")
  assert r.code == 2 and "atlas.objective" in r.error_lines[0], r


def test_accentuate_script_takes_a_custom_family_and_transforms(
    run_script, pieces, tmp_path, four_photos):
  _, module = pieces
  photo = sorted(four_photos.glob("*.jpg"))[0]
  out = tmp_path / "acc"
  common = [f"--image={photo}", "--layer_reg=conv2d0", "--size=34",
            "--steps=1", f"--out={out}"]
  module.calls.clear()
  r = run_script("accentuate", f"--objective={MODULE}:push_pull@conv2d0:0",
                 f"--transforms={MODULE}:roll", *common)
  assert r.code == 0, r
  (record,) = json.loads((out / "accentuation.json").read_text())
  assert record["objective"] == f"{MODULE}:push_pull@conv2d0:0"
  assert {c[0] for c in module.calls} == {"objective", "transforms"}
  for bad, needle in ((f"--objective={MODULE}:nothing@conv2d0:0", "no attribute"),
                      (f"--objective={MODULE}:push_pull@conv2d0:x", "integer"),
                      ("--transforms=no_such", "register_transforms"),
                      ("--transforms=tests_jitter", "keep the size")):
    flags = [f"--objective={MODULE}:push_pull@conv2d0:0", *common[:-1],
             f"--out={tmp_path / 'refused'}", bad]
    r = run_script("accentuate", *flags)
    assert r.code == 2 and len(r.error_lines) == 1 and needle in r.error_lines[0], r
    assert not (tmp_path / "refused").exists()
