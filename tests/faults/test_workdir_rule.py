"""Issue 29: the work-directory rule on the stages added since issue 22.

One test per probe of the issue (1-8, 12) and per suspicion settled here,
each written to fail on the code before the fix: extra photos in a verified
folder, an empty --data, non-UTF-8 names, the lock, content fingerprints, a
symlinked lock or output folder, crafted links, layers whose names hold "/",
the lock in a multi-process job, a dictionary of other weights, files outside
the work directory, atomic one-shot outputs. The browser half (links in
Chromium) is tests/faults/test_links_in_browser.py.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from PIL import Image

import toy_model
from atlasjax import data as data_lib
from atlasjax import viewer
from atlasjax import workdir
from atlasjax.features import pipeline
from atlasjax.features import train as train_lib
from atlasjax.microscope import site
from atlasjax.viewer import synthetic

REPO = pathlib.Path(__file__).resolve().parents[2]
# The smallest dictionary run of the toy CNN: 6 photos, 3 held out.
DICT = pipeline.DictionaryConfig(
    "conv2", train=train_lib.TrainConfig(features=8, k=2, epochs=1, batch_size=32,
                                         checkpoint_every=0),
    heldout_every=2, shard_photos=2)


def _photos(folder: pathlib.Path, n: int = 6, seed: int = 0) -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(
        folder / f"p{i}.png")
  return folder


@pytest.fixture(scope="module")
def toy_params(toy):
  return toy[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_params):  # pylint: disable=redefined-outer-name
  """A finished toy dictionary (its photos, work directory and metrics)."""
  root = tmp_path_factory.mktemp("dict")
  photos = _photos(root / "photos")
  metrics = pipeline.run(DICT, toy_model.TOY_MODEL, toy_params, photos,
                         root / "work")
  return photos, root / "work", metrics


def _files(folder: pathlib.Path) -> dict:
  return {str(p.relative_to(folder)): p.read_bytes()
          for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


# --------------------------------------------------------------- probe 1 --

def test_probe1_unpinned_photo_in_verified_sample_is_refused(data_root, tmp_path):
  copy = tmp_path / "data" / data_lib.SAMPLE_DIR
  copy.mkdir(parents=True)
  for p in (data_root / data_lib.SAMPLE_DIR).iterdir():
    (copy / p.name).symlink_to(p)
  assert data_lib.sample_dir(tmp_path / "data") == copy     # pinned: accepted
  (copy / "sub").mkdir()
  Image.new("RGB", (8, 8)).save(copy / "sub" / "n01440764_extra.jpg")
  with pytest.raises(data_lib.DataError, match=r"not pinned.*sub/n01440764_extra"):
    data_lib.sample_dir(tmp_path / "data")


# --------------------------------------------------------------- probe 2 --

def test_probe2_data_folder_without_data_is_an_error_not_a_fallback(
    data_root, tmp_path, monkeypatch):
  monkeypatch.setenv(data_lib.ENV_VAR, str(data_root))
  (tmp_path / "empty").mkdir()
  for find in (data_lib.sample_dir, data_lib.googlenet_dir):
    with pytest.raises(data_lib.DataError, match="holds no"):
      find(tmp_path / "empty")


# --------------------------------------------------------------- probe 3 --

def test_probe3_dictionary_skips_a_non_utf8_name(toy, tmp_path, caplog):
  photos = _photos(tmp_path / "photos")
  bad = os.fsdecode(os.fsencode(str(photos)) + b"/\xff.png")
  Image.new("RGB", (32, 32)).save(bad, format="PNG")
  train, heldout = pipeline.collect(DICT, *toy, photos, tmp_path / "work")
  assert train.manifest["settings"]["photos"] + heldout.manifest["settings"]["photos"] == 6
  assert "not valid UTF-8" in caplog.text


# --------------------------------------------------------------- probe 4 --

HOLD = textwrap.dedent("""
  import sys, time
  from atlasjax import workdir
  with workdir.lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def held(tmp_path):
  """A child process holding ``tmp_path / 'held'``'s lock."""
  folder = tmp_path / "held"
  folder.mkdir()
  proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)],
                          stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
  assert proc.stdout.readline().strip() == "held"
  yield folder
  proc.kill()
  proc.wait()


def test_probe4_dictionary_stages_take_the_lock(trained, held, toy_params):  # pylint: disable=redefined-outer-name
  photos, work, _ = trained
  before = _files(work)
  with pytest.raises(workdir.WorkdirError, match="in use by pid"):
    pipeline.run(DICT, toy_model.TOY_MODEL, toy_params, photos, held)
  assert not (held / pipeline.DICTIONARY_FILE).exists()
  # dictionary_pages: the labels of an atlas another run holds.
  from atlasjax.features import sae  # pylint: disable=g-import-not-at-top
  from atlasjax.microscope import dictionary  # pylint: disable=g-import-not-at-top
  synthetic.make_workdir(held, sizes=(4,), icon_size=8, n_points=50, n_images=2)
  d = sae.load(work / pipeline.DICTIONARY_FILE)
  with pytest.raises((workdir.WorkdirError, ValueError)):
    dictionary.label_atlas(held, d)
  assert not list(held.rglob("dictionary_labels.json"))
  assert _files(work) == before


# --------------------------------------------------------------- probe 5 --

def test_probe5_dictionary_resumes_only_from_the_same_content(trained, tmp_path,
                                                             toy_params):  # pylint: disable=redefined-outer-name
  photos, work, _ = trained
  params = toy_params
  again = pipeline.run(DICT, toy_model.TOY_MODEL, params, photos, work)
  assert again["steps"] > 0                       # the same inputs resume
  before = _files(work)
  other_params = jax.tree_util.tree_map(lambda a: a * 1.01, params)
  with pytest.raises(ValueError, match="weights"):   # a StageMismatch
    pipeline.run(DICT, toy_model.TOY_MODEL, other_params, photos, work)
  edited = tmp_path / "edited"
  edited.mkdir()
  for p in photos.iterdir():
    (edited / p.name).write_bytes(p.read_bytes())
  Image.new("RGB", (32, 32), (9, 9, 9)).save(edited / "p3.png")   # same name
  with pytest.raises(ValueError, match="photos"):
    pipeline.run(DICT, toy_model.TOY_MODEL, params, edited, work)
  with pytest.raises(ValueError, match="seed"):
    pipeline.run(dataclasses.replace(DICT, train=dataclasses.replace(
        DICT.train, seed=3)), toy_model.TOY_MODEL, params, photos, work)
  assert _files(work) == before                   # refused before any write


# --------------------------------------------------------------- probe 6 --

def test_probe6_symlinked_lock_file_is_refused(tmp_path):
  victim = tmp_path / "victim.txt"
  victim.write_text("precious\n")
  work = tmp_path / "work"
  work.mkdir()
  (work / workdir.LOCK_FILE).symlink_to(victim)
  with pytest.raises(workdir.WorkdirError, match="symbolic link"):
    with workdir.lock(work):
      pass
  assert victim.read_text() == "precious\n"


# --------------------------------------------------------------- probe 7 --

@pytest.fixture
def foreign(tmp_path):
  """A folder outside the work directory with a file in ``data/``."""
  folder = tmp_path / "foreign"
  (folder / "data").mkdir(parents=True)
  (folder / "data" / "keep.txt").write_text("mine")
  return folder


def _intact(folder: pathlib.Path) -> bool:
  return (sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
          == ["data", "data/keep.txt"]
          and (folder / "data" / "keep.txt").read_text() == "mine")


def test_probe7_symlinked_viewer_folder_is_refused(tmp_path, foreign):
  work = synthetic.make_workdir(tmp_path / "atlas", sizes=(4,), icon_size=8,
                                n_points=50, n_images=2)
  (work / "viewer").symlink_to(foreign, target_is_directory=True)
  with pytest.raises(workdir.WorkdirError, match="outside the work directory"):
    viewer.write_viewer(work)
  assert _intact(foreign)


def test_probe7_symlinked_microscope_folder_is_refused(tmp_path, foreign):
  work = tmp_path / "work"
  work.mkdir()
  (work / site.SITE_DIR).symlink_to(foreign, target_is_directory=True)
  with workdir.lock(work), pytest.raises(workdir.WorkdirError, match="outside"):
    site.write_site(toy_model.TOY_MODEL, None, work, [], {}, [])
  assert _intact(foreign)


def test_probe7_writes_under_a_held_workdir_never_leave_it(tmp_path, foreign):
  work = tmp_path / "work"
  (work / "inner").mkdir(parents=True)
  (work / "out").symlink_to(foreign, target_is_directory=True)
  (work / "inner" / "ok").symlink_to(work / "inner", target_is_directory=True)
  with workdir.lock(work):
    for act in (lambda: workdir.write_text(work / "out" / "data" / "x.txt", "x"),
                lambda: workdir.remove_tree(work / "out" / "data"),
                lambda: workdir.make_dirs(work / "out" / "new")):
      with pytest.raises(workdir.WorkdirError, match="outside"):
        act()
    workdir.write_text(work / "inner" / "ok" / "y.txt", "y")   # links inside: fine
  assert _intact(foreign) and (work / "inner" / "y.txt").read_text() == "y"


# --------------------------------------------------------------- probe 8 --

def crafted_labels(work: pathlib.Path) -> str:
  """A labels file whose ``pages`` folder is named like a javascript: URL (the
  folder exists, so the writer links it); returns the folder's name."""
  name = "javascript:alert(document.domain)"
  (work / name).mkdir()
  (work / name / "f0.html").write_text("<title>x</title>")
  grid = work / "grid_4"
  first = next(g for g in workdir.read_json(work / "atlas.json")["grids"]
               if g["size"] == 4)["cells"][0]
  cells = [{"x": first["x"], "y": first["y"],
            "features": [{"feature": 0, "code": 1.0}]}]
  workdir.write_json(grid / viewer.writer.DICTIONARY_LABELS_FILE,
                     {"layer": "mixed4c", "size": 4, "pages": f"../{name}",
                      "cells": cells})
  return name


def test_probe8_crafted_labels_never_put_javascript_in_a_link(tmp_path):
  work = synthetic.make_workdir(tmp_path / "atlas", sizes=(4,), icon_size=8,
                                n_points=50, n_images=2)
  crafted_labels(work)
  viewer.write_viewer(work)
  text = (work / "viewer" / "data" / "L0_g4_cells.js").read_text()
  assert "javascript%3Aalert" in text and "javascript:" not in text
  # A labels file pointing at pages outside the work directory is refused.
  outside = tmp_path / "elsewhere"
  outside.mkdir()
  (outside / "f0.html").write_text("x")
  labels = work / "grid_4" / viewer.writer.DICTIONARY_LABELS_FILE
  spec = workdir.read_json(labels)
  workdir.write_json(labels, {**spec, "pages": str(outside)})
  with pytest.raises(viewer.AtlasFormatError, match="outside the work directory"):
    viewer.write_viewer(work)
  cell = spec["cells"][0]
  workdir.write_json(labels, {**spec, "cells": [{**cell, "features": [
      {"feature": "0\" onmouseover=\"x", "code": 1}]}]})
  with pytest.raises(viewer.AtlasFormatError, match="a label must be"):
    viewer.write_viewer(work)


def test_absolute_class_names_and_escaping_example_ids_stay_out(tmp_path):
  """Suspicion: atlas.json pulls arbitrary local files into the viewer."""
  work = synthetic.make_workdir(tmp_path / "atlas", sizes=(4,), icon_size=8,
                                n_points=50, n_images=2)
  secret = tmp_path / "secret.json"
  secret.write_text('["private name"]')
  spec = workdir.read_json(work / "atlas.json")
  workdir.write_json(work / "atlas.json", {**spec, "class_names": str(secret)})
  with pytest.raises(viewer.AtlasFormatError, match="outside"):
    viewer.write_viewer(work)
  photo = tmp_path / "private.jpg"
  Image.new("RGB", (16, 16), (200, 10, 10)).save(photo)
  grids = [{**g, "cells": [{**c, "examples": ["../private.jpg", str(photo)]}
                           for c in g["cells"]]} for g in spec["grids"]]
  workdir.write_json(work / "atlas.json", {**spec, "grids": grids,
                                           "images_root": str(work)})
  viewer.write_viewer(work)
  assert not list((work / "viewer" / "thumbs").iterdir())


# -------------------------------------------------------------- probe 12 --

def test_probe12_unit_links_encode_each_segment_of_a_layer_name():
  assert workdir.url_path("block1/attn/out") == "block1/attn/out"
  assert workdir.url_path("block1/fc2:input") == "block1/fc2%3Ainput"
  assert workdir.url_path('a"b <c>') == "a%22b%20%3Cc%3E"
  for bad in ("/etc/passwd", "../x", "a//b", ""):
    with pytest.raises(ValueError, match="relative path"):
      workdir.url_path(bad)


# ------------------------------------------------------------- suspicions --

def test_other_processes_of_a_job_check_the_lock(tmp_path, held, monkeypatch):
  """Suspicion: processes other than 0 never check the lock. They now meet
  process 0 at a barrier and stop unless the lock is held."""
  monkeypatch.setattr(workdir, "_job_processes", lambda: 2)
  met = []
  monkeypatch.setattr(workdir, "_job_barrier", met.append)
  with workdir.lock(held, take=False):     # process 0 (the child) holds it
    with workdir.lock(held, take=False):   # nested (a pipeline's stage): no
      pass                                 # second barrier, as on process 0
  free = tmp_path / "free"
  with pytest.raises(workdir.WorkdirError, match="not locked by process 0"):
    with workdir.lock(free, take=False):
      pass
  assert met == [held, free]


def test_pages_and_labels_refuse_a_dictionary_of_other_weights(trained, tmp_path,
                                                              toy_params):  # pylint: disable=redefined-outer-name
  """Suspicion: dictionary pages and atlas labels never check the weights."""
  _, work, metrics = trained
  params = toy_params
  checked = pipeline.check_trained_on(work, toy_model.TOY_MODEL, params)
  assert checked["weights"] == metrics["weights"] == workdir.params_fingerprint(params)
  other = jax.tree_util.tree_map(lambda a: a + 1, params)
  with pytest.raises(ValueError, match="other weights"):
    pipeline.check_trained_on(work, toy_model.TOY_MODEL, other)
  from atlasjax.features import sae  # pylint: disable=g-import-not-at-top
  from atlasjax.microscope import dictionary  # pylint: disable=g-import-not-at-top
  atlas = synthetic.make_workdir(tmp_path / "atlas", sizes=(4,), icon_size=8,
                                 n_points=50, n_images=2)
  d = sae.load(work / pipeline.DICTIONARY_FILE)
  with pytest.raises(ValueError, match="channels|model"):
    dictionary.check_atlas(atlas, d, trained_on=metrics)


def test_one_shot_outputs_are_written_atomically():
  """Suspicion: render.py, circuit.py and evaluate.py write in place. Each
  writes through atlasjax.workdir now (checked in the source: a plain
  ``.save(``/``open(..., "w")``/``np.save`` of an output is gone)."""
  for script, plain in (("render.py", (").save(out", "write_text(json")),
                        ("circuit.py", ("fig.savefig(path", 'open(stem')),
                        ("evaluate.py", ("np.save(",))):
    text = (REPO / "experiments" / script).read_text()
    assert "workdir_lib." in text, script
    assert not any(p in text for p in plain), (script, plain)
