"""Issue 22, item 3: a stage script refused by validation writes nothing.

``experiments/layout.py`` and ``render_atlas.py`` used to record the run's
settings (``run_config.json``) before the stage checked them, so a bad first
run changed the work directory. Each case here hashes every file of a real
GoogLeNet work directory (collected by ``collect.py`` on four photos), runs a
script with a bad setting, and checks: one ``error:`` line, exit status 2,
and the work directory byte-identical; then the corrected run succeeds.
``atlas.py``, ``class_atlas.py``, ``compare_classes.py`` and
``compare_layers.py`` are checked the same way.
"""

import hashlib
import json
import pathlib

# mixed3a is early: truncated forwards and small compiles keep this quick.
COLLECT = ["--layers=mixed3a", "--crops_per_image=1", "--image_size=64",
           "--noattributions", "--shard_images=4"]


def tree_hash(folder: pathlib.Path) -> dict[str, str]:
  """SHA-256 of every file under ``folder``, by relative path."""
  return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused_untouched(result, workdir, before, *needles):
  assert result.code == 2 and "Traceback" not in result.err, result
  assert len(result.error_lines) == 1, result
  for needle in needles:
    assert needle in result.error_lines[0], result.error_lines[0]
  assert tree_hash(workdir) == before


def test_layout_and_render_atlas_scripts_validate_before_writing(
    run_script, tmp_path, four_photos, linear_umap):
  """One work directory through the stage scripts (one collection: the
  GoogLeNet compile is the cost); each script first refused, then run."""
  work = tmp_path / "work"
  r = run_script("collect", f"--images={four_photos}", f"--workdir={work}",
                 *COLLECT)
  assert r.code == 0, r
  _layout_refused_then_run(run_script, work)
  _render_atlas_refused_then_run(run_script, work)
  _atlas_and_class_atlas_refused(run_script, work, four_photos)


def _layout_refused_then_run(run_script, work):
  before = tree_hash(work)
  assert "run_config.json" in before   # collect.py recorded its settings
  common = [f"--workdir={work}", "--layers=mixed3a"]
  assert_refused_untouched(run_script("layout", f"--workdir={work}",
                                      "--layers=mixed4d"),
                           work, before, "mixed4d")
  assert_refused_untouched(run_script("layout", *common, "--n_neighbors=1"),
                           work, before, "--n_neighbors=1")
  r = run_script("layout", *common, "--n_neighbors=2")
  assert r.code == 0, r
  assert (work / "layout" / "coords.npy").is_file()
  recorded = json.loads((work / "run_config.json").read_text())
  assert recorded["layout"]["n_neighbors"] == 2
  assert sorted(recorded["built"]) == ["collect", "layout"]


def _render_atlas_refused_then_run(run_script, work):
  before = tree_hash(work)
  common = [f"--workdir={work}", "--layers=mixed3a", "--grid_sizes=1",
            "--min_density=0", "--icon_size=32", "--steps=1",
            "--transforms=none", "--n_examples=1", "--noviewer"]
  for bad, needle in (("--class_ranking=loudest", "--class_ranking"),
                      ("--param=watercolour", "--param"),
                      ("--lr=-1", "--lr"),
                      ("--icon_size=8", "31 px")):
    assert_refused_untouched(run_script("render_atlas", *common, bad),
                             work, before, needle)
  r = run_script("render_atlas", *common)
  assert r.code == 0, r
  atlas = json.loads((work / "atlas.json").read_text())
  assert atlas["layer"] == "mixed3a" and atlas["grids"][0]["cells"]
  recorded = json.loads((work / "run_config.json").read_text())
  assert recorded["atlas"]["steps"] == 1 and "atlas" in recorded["built"]


def _atlas_and_class_atlas_refused(run_script, work, photos):
  """The pipeline and the class atlas check every stage's settings first
  (before, a bad icon setting was found only after collecting and laying out)."""
  before = tree_hash(work)
  common = [f"--workdir={work}", f"--images={photos}", *COLLECT]
  assert_refused_untouched(run_script("atlas", *common, "--steps=0"), work,
                           before, "--steps=0")
  assert_refused_untouched(run_script("atlas", *common, "--fit_sample=2"), work,
                           before, "--fit_sample=2")
  assert_refused_untouched(run_script("class_atlas", *common, "--class=goldfish",
                                      "--top_k=-1"), work, before, "--top_k")
  assert_refused_untouched(run_script("compare_classes", *common, "--left=goldfish",
                                      "--right=wok", "--top_k=-1"), work, before,
                           "--top_k")
  assert_refused_untouched(run_script("compare_layers", f"--workdir={work}",
                                      f"--images={photos}", "--layers=mixed3a,mixed3b",
                                      "--steps=0"), work, before, "--steps=0")
  # A data problem found later (no attributions collected) also leaves it.
  assert_refused_untouched(run_script("class_atlas", *common, "--class=goldfish"),
                           work, before, "attributions")
