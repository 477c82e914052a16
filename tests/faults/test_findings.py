"""One test per finding of issue 22 (work directories you can trust).

Each was written as a probe first and failed on the code before the fix.
Data-copy findings (pinned hashes, ``--data``, manifest names) are in
tests/test_data.py; the kill -9 harness is tests/faults/test_kill_and_resume.py.
"""

import dataclasses
import json
import os
import pathlib
import re
import struct
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import toy_model
from atlasjax import workdir as workdir_lib
from atlasjax.atlas import collect
from atlasjax.atlas import layout
from atlasjax.atlas import render_atlas
from atlasjax.models import pth
from atlasjax.optvis import objectives
from atlasjax.optvis import render as render_lib

REPO = pathlib.Path(__file__).resolve().parents[2]
TOY = collect.CollectConfig(layers=("conv2",), crops_per_image=1, image_size=32,
                            batch_size=8, shard_images=4, attributions=False)


def make_images(folder: pathlib.Path, n: int, seed: int = 0) -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(
        folder / f"img_{i:03d}.png")
  return folder


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
  """A finished 12-vector toy collection (module-shared, read-only)."""
  root = tmp_path_factory.mktemp("collected")
  images = make_images(root / "imgs", 12)
  collect.run(TOY, toy_model.TOY_MODEL, toy_model.toy_params(), images, root / "wd")
  return root


class _FakeUmap:
  """A deterministic stand-in for umap.UMAP (no numba compile in this test)."""

  def __init__(self, **kwargs):
    self.seed = kwargs.get("random_state", 0)

  def fit(self, x):
    self.embedding_ = x[:, :2].astype(np.float32)
    return self

  def fit_transform(self, x):
    return self.fit(x).embedding_

  def transform(self, x):
    return x[:, :2].astype(np.float32) + 1.0


# ---------------------------------------------------------------- 1. no code

class _Payload:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, "w"))


def test_layout_never_unpickles_a_workdir_file(collected, tmp_path, monkeypatch):
  """A planted reducer.pkl with a matching settings stamp is not executed."""
  import pickle
  monkeypatch.setattr(layout, "_reducer", lambda n, *a, **k: _FakeUmap())
  wd = tmp_path / "wd"
  import shutil
  shutil.copytree(collected / "wd", wd)
  config = layout.LayoutConfig(layer="conv2", fit_sample=6, whiten=False)
  c = collect.Collection.open(wd)
  settings = {"config": __import__("dataclasses").asdict(config),
              "collection": layout.collection_fingerprint(c), "subset": None}
  partial = wd / "layout" / layout.PARTIAL_DIR
  partial.mkdir(parents=True)
  (partial / "settings.json").write_text(json.dumps(settings))
  marker = tmp_path / "pwned"
  (partial / "reducer.pkl").write_bytes(pickle.dumps(_Payload(str(marker))))
  try:
    layout.run(config, wd)
  except Exception:   # pylint: disable=broad-except
    pass   # Whatever happens, the payload must not have run.
  assert not marker.exists()


def test_no_pickle_loading_anywhere_in_the_library():
  pattern = re.compile(r"pickle\.loads?\(|allow_pickle\s*=\s*True|"
                       r"import pickle|cloudpickle|joblib\.load")
  offenders = []
  for path in (REPO / "atlasjax").rglob("*.py"):
    if path.name == "pth.py":   # the restricted .pth reader, tested below
      continue
    for i, line in enumerate(path.read_text().splitlines(), 1):
      if pattern.search(line):
        offenders.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
  assert not offenders, offenders


def _op_str(s: str) -> bytes:
  raw = s.encode()
  return b"X" + struct.pack("<I", len(raw)) + raw


def _float_checkpoint(path: pathlib.Path, values: np.ndarray) -> None:
  """A minimal torch.save zip checkpoint {"w": float32 tensor}, opcode by opcode."""
  pkl = (b"\x80\x02}" + _op_str("w") +
         b"ctorch._utils\n_rebuild_tensor_v2\n(" +
         b"(" + _op_str("storage") + b"ctorch\nFloatStorage\n" + _op_str("0") +
         _op_str("cpu") + b"K" + bytes([len(values)]) + b"tQ" +
         b"K\x00K" + bytes([len(values)]) + b"\x85K\x01\x85\x89tRs.")
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("ck/data.pkl", pkl)
    archive.writestr("ck/byteorder", "little")
    archive.writestr("ck/data/0", values.astype("<f4").tobytes())


def test_pth_build_opcode_cannot_edit_shared_storage_types(tmp_path):
  good = tmp_path / "good.pth"
  values = np.array([1.5, -2.0, 3.25], np.float32)
  _float_checkpoint(good, values)
  assert pth.load(good)["w"].dtype == np.float32
  evil = tmp_path / "evil.pth"
  # GLOBAL torch.FloatStorage; BUILD {"name": "IntStorage"}: edits the object.
  evil.write_bytes(b"\x80\x02ctorch\nFloatStorage\n}" + _op_str("name") +
                   _op_str("IntStorage") + b"sb.")
  with pytest.raises(pth.PthError):
    pth.load(evil)
  back = pth.load(good)["w"]
  assert back.dtype == np.float32
  np.testing.assert_array_equal(back, values)


# ---------------------------------------- 3. validation before any write

def test_failed_validation_writes_nothing_and_the_fix_then_runs(tmp_path):
  images = make_images(tmp_path / "imgs", 4)
  wd = tmp_path / "wd"
  small = collect.CollectConfig(layers=("conv2",), image_size=8, crops_per_image=1,
                                attributions=False, shard_images=4)
  with pytest.raises(collect.CollectError, match="image_size"):
    collect.run(small, toy_model.TOY_MODEL, toy_model.toy_params(), images, wd)
  assert not wd.exists() or not any(wd.rglob("*"))   # left as it was found
  fixed = collect.run(TOY, toy_model.TOY_MODEL, toy_model.toy_params(), images, wd)
  assert fixed["complete"] and fixed["samples"] == 4


@pytest.mark.parametrize("field,value", [("shard_images", 0), ("batch_size", 0),
                                         ("crops_per_image", 0),
                                         ("loader_threads", 0)])
def test_integer_settings_are_bounded(tmp_path, field, value):
  images = make_images(tmp_path / "imgs", 2)
  config = collect.CollectConfig(**{**TOY.__dict__, field: value})
  with pytest.raises(collect.CollectError, match=f"--{field}"):
    collect.run(config, toy_model.TOY_MODEL, toy_model.toy_params(), images,
                tmp_path / "wd")
  assert not (tmp_path / "wd").exists()


# --------------------------------------------------------- 4. odd file names

def test_non_utf8_file_name_is_skipped_with_a_warning(tmp_path, caplog):
  images = make_images(tmp_path / "imgs", 3)
  bad = os.fsencode(images) + b"/odd\xff\xfename.png"
  with open(bad, "wb") as f:
    f.write((images / "img_000.png").read_bytes())
  manifest = collect.run(TOY, toy_model.TOY_MODEL, toy_model.toy_params(), images,
                         tmp_path / "wd")
  assert manifest["samples"] == 3
  assert "odd" in caplog.text


def test_microscope_survives_a_non_utf8_file_name(tmp_path, caplog):
  from atlasjax import microscope
  images = make_images(tmp_path / "imgs", 3)
  bad = os.fsencode(images) + b"/odd\xff.png"
  with open(bad, "wb") as f:
    f.write((images / "img_000.png").read_bytes())
  from atlasjax import images as images_lib
  paths = images_lib.list_images(images)
  config = microscope.MicroscopeConfig(layers=("conv1",), size=16, steps=1,
                                       chunk_size=8, examples=1, links=1,
                                       tile=8, batch_size=4, transforms="none")
  summary = microscope.build(toy_model.TOY_MODEL, toy_model.toy_params(), config,
                             tmp_path / "ms", paths, log=lambda _: None)
  assert pathlib.Path(summary["index"]).is_file()
  assert "odd" in caplog.text


# -------------------------------------------------------- 5. finite or loud

def _zero_acts(c=16):
  return {"conv2": jnp.zeros((1, 3, 3, c))}


@pytest.mark.parametrize("form", ["cosine", "lucid_notebook", "lucid"])
def test_atlas_objective_is_finite_at_zero_activations(form):
  rng = np.random.default_rng(0)
  v = jnp.asarray(rng.normal(size=16), jnp.float32)
  w = None if form == "lucid" else jnp.eye(16)
  obj = objectives.direction_neuron_cossim("conv2", v, cossim_pow=4.0,
                                           whitening=w, form=form)
  value, grad = jax.value_and_grad(lambda a: obj({"conv2": a}))(
      _zero_acts()["conv2"])
  assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()


def _nan_make(direction):
  """An objective that is NaN for item 1 (its direction holds a NaN)."""
  return objectives.direction_neuron_cossim("conv2", direction, cossim_pow=1.0,
                                            whitening=jnp.eye(16), form="cosine")


def test_renderer_refuses_a_non_finite_item_naming_it():
  model, params = toy_model.TOY_MODEL, toy_model.toy_params()
  dirs = np.ones((3, 16), np.float32)
  dirs[1, 3] = np.nan
  config = render_lib.RenderConfig(size=16, steps=2, transforms="none", param="pixel",
                                   decorrelate=False)
  with pytest.raises(render_lib.RenderError, match=r"item 1\b"):
    render_lib.render(model, params, _nan_make, args=jnp.asarray(dirs), config=config)
  kept = render_lib.render(model, params, _nan_make, args=jnp.asarray(dirs),
                           config=config, check_finite=False)
  assert render_lib.nonfinite_items(kept).tolist() == [1]


def test_argmax_over_attempts_ignores_non_finite_ones():
  values = jnp.array([[jnp.nan, 1.0, 3.0], [2.0, jnp.inf, -1.0]])
  images = jnp.ones((6, 2, 2, 3))
  best = render_lib.best_finite_attempt(values, images.reshape(2, 3, 2, 2, 3))
  assert best.tolist() == [2, 0]


ICONS = render_atlas.AtlasConfig(layer="conv2", icon_size=4, steps=1,
                                 transforms="none", param="pixel", chunk_size=2,
                                 whiten=False)


def _fake_render(directions):
  """Stands in for an icon render (no compile): item i's image is the sigmoid
  of its direction's first three entries, its value their sum, so a NaN
  direction entry gives a NaN image and value, as a diverged render does."""
  d = jnp.asarray(directions, jnp.float32)
  images = jnp.broadcast_to(jax.nn.sigmoid(d[:, None, None, :3]),
                            (len(d), 4, 4, 3))
  return images, d[:, :3].sum(axis=1)


class _FakeRenderer:
  """:class:`render_lib.Renderer`'s ``fn`` and ``mesh`` over :func:`_fake_render`."""
  mesh = None

  def fn(self, params, key, item_ids, args, chunk_index):
    del params, key, item_ids, chunk_index
    return (*_fake_render(args), None, None, None)


def _icons(path, directions, chunk_dir):
  """Icons by the one-process path or the multi-process path (run here in
  one process: chunk groups of one chunk, gathered from this process)."""
  if path == "single":
    return render_atlas.render_icons(toy_model.TOY_MODEL, None, "conv2",
                                     directions, None, ICONS,
                                     jax.random.PRNGKey(0), chunk_dir)
  n = len(directions)
  spans = [(lo, min(n, lo + 2)) for lo in range(0, n, 2)]
  paths = [chunk_dir / f"chunk_{c:04d}_{lo}_{hi}.npy"
           for c, (lo, hi) in enumerate(spans)]
  make = render_atlas.make_atlas_objective("conv2", None, 1.0, "cosine")
  return render_atlas._render_icons_global(  # pylint: disable=protected-access
      toy_model.TOY_MODEL, {}, make, directions,
      dataclasses.replace(ICONS.render_config(), chunk_size=2),
      jax.random.PRNGKey(0), spans, paths, "conv2")


def test_both_icon_paths_refuse_a_non_finite_icon_naming_it(tmp_path,
                                                             monkeypatch):
  """The multi-process path used to save and return a NaN icon as pixels
  (a two-device probe of the old code: values 0…129, chunk saved)."""
  monkeypatch.setattr(render_lib, "render", lambda model, params, make, args,
                      **kw: render_lib.RenderResult(*_fake_render(args), None,
                                                    None))
  monkeypatch.setattr(render_lib, "build", lambda *a, **k: _FakeRenderer())
  dirs = np.linspace(-1, 1, 5 * 16, dtype=np.float32).reshape(5, 16)
  expected = np.asarray(render_atlas.checked_icons(*_fake_render(dirs), 0, "c"))
  dirs_nan = dirs.copy()
  dirs_nan[2, 0] = np.nan
  for path in ("single", "global"):
    # Both paths put every icon in its place (chunks of 2, 2, 1) …
    (tmp_path / path).mkdir()
    np.testing.assert_array_equal(_icons(path, dirs, tmp_path / path), expected)
    # … and refuse the NaN one by name, before its chunk is saved.
    chunk_dir = tmp_path / f"{path}_nan"
    chunk_dir.mkdir()
    with pytest.raises(render_lib.RenderError, match=r"for icon 2\b"):
      _icons(path, dirs_nan, chunk_dir)
    assert [p.name for p in chunk_dir.iterdir()] == ["chunk_0000_0_2.npy"], path


# ------------------------------------------------------ 6. one run per workdir

_HOLDER = ("import sys, time; from atlasjax import workdir as w\n"
           "with w.lock(sys.argv[1]):\n  print('locked', flush=True); time.sleep(60)")


def test_second_run_is_refused_naming_the_holder_until_it_dies(tmp_path):
  images = make_images(tmp_path / "imgs", 2)
  wd = tmp_path / "wd"
  proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(wd)],
                          stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(workdir_lib.WorkdirError, match=f"in use by pid {proc.pid}"):
      collect.run(TOY, toy_model.TOY_MODEL, toy_model.toy_params(), images, wd)
    assert not (wd / "collect").exists()
  finally:
    proc.kill()   # kill -9: the OS releases the lock.
    proc.wait()
  assert collect.run(TOY, toy_model.TOY_MODEL, toy_model.toy_params(), images,
                     wd)["samples"] == 2


# ------------------------------------------- 7. atomic writes, fingerprints

def test_crash_mid_write_leaves_the_old_file_and_no_temporary(tmp_path):
  target = tmp_path / "coords.npy"
  workdir_lib.save_npy(target, np.arange(4.0))

  def half_then_crash(f):
    f.write(b"\x93NUMPY truncated")
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    workdir_lib.write_with(target, half_then_crash)
  np.testing.assert_array_equal(np.load(target), np.arange(4.0))
  assert sorted(os.listdir(tmp_path)) == ["coords.npy"]


def test_layout_is_not_vouched_for_while_being_rewritten(collected, tmp_path,
                                                          monkeypatch):
  """A rerun with other settings that dies mid-way must not leave the old
  layout.json vouching for half-written outputs."""
  import shutil
  monkeypatch.setattr(layout, "_reducer", lambda n, *a, **k: _FakeUmap())
  wd = tmp_path / "wd"
  shutil.copytree(collected / "wd", wd)
  first = layout.LayoutConfig(layer="conv2", whiten=False)
  layout.run(first, wd)
  second = layout.LayoutConfig(layer="conv2", whiten=False, pca_dims=2)

  def crash(*a, **k):
    raise KeyboardInterrupt
  monkeypatch.setattr(layout, "scatter_plot", crash)
  with pytest.raises(KeyboardInterrupt):
    layout.run(second, wd)
  info = wd / "layout" / "layout.json"
  # Either no layout is vouched for, or the one vouched for is intact.
  if info.exists():
    recorded = json.loads(info.read_text())["settings"]["config"]["pca_dims"]
    xy = np.load(wd / "layout" / "coords.npy")
    monkeypatch.undo()
    monkeypatch.setattr(layout, "_reducer", lambda n, *a, **k: _FakeUmap())
    ref = tmp_path / "ref"
    shutil.copytree(collected / "wd", ref)
    layout.run(layout.LayoutConfig(layer="conv2", whiten=False, pca_dims=recorded),
               ref)
    np.testing.assert_array_equal(xy, np.load(ref / "layout" / "coords.npy"))


def test_an_edited_photo_of_the_same_size_is_noticed(tmp_path):
  images = make_images(tmp_path / "imgs", 4)
  wd = tmp_path / "wd"
  collect.run(TOY, toy_model.TOY_MODEL, toy_model.toy_params(), images, wd)
  victim = images / "img_001.png"
  size, stat = victim.stat().st_size, victim.stat()
  raw = bytearray(victim.read_bytes())
  raw[-20] ^= 0xFF    # same size, different content
  victim.write_bytes(bytes(raw))
  os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  assert victim.stat().st_size == size
  with pytest.raises(collect.CollectError, match="dataset"):
    collect.run(TOY, toy_model.TOY_MODEL, toy_model.toy_params(), images, wd)


def test_icon_chunks_of_other_weights_are_not_reused():
  config = render_atlas.AtlasConfig(layer="conv2")
  d = np.ones((3, 16), np.float32)
  a = render_atlas._grid_key(config, 4, 1, "fp", d,
                             workdir_lib.params_fingerprint(toy_model.toy_params()))
  b = render_atlas._grid_key(config, 4, 1, "fp", d, workdir_lib.params_fingerprint(
      toy_model.toy_params(jax.random.PRNGKey(5))))
  assert a != b


def test_synthetic_viewer_refuses_to_overwrite_a_real_atlas(tmp_path):
  from atlasjax.viewer import synthetic
  (tmp_path / "atlas.json").write_text(json.dumps({"version": 1, "model": "x"}))
  before = (tmp_path / "atlas.json").read_bytes()
  with pytest.raises(synthetic.SyntheticError, match="real atlas"):
    synthetic.make_workdir(tmp_path, sizes=(4,))
  assert (tmp_path / "atlas.json").read_bytes() == before


def test_layout_never_writes_or_deletes_through_a_symlinked_folder(
    collected, tmp_path, monkeypatch):
  """Issue 29, probe 7: a layout folder that is a symlink out of the work
  directory is refused; the foreign tree (a stale-looking partial/) stays."""
  import shutil
  monkeypatch.setattr(layout, "_reducer", lambda n, *a, **k: _FakeUmap())
  wd = tmp_path / "wd"
  shutil.copytree(collected / "wd", wd)
  foreign = tmp_path / "foreign"
  (foreign / layout.PARTIAL_DIR).mkdir(parents=True)
  (foreign / layout.PARTIAL_DIR / "keep.txt").write_text("mine")
  (wd / "layout").symlink_to(foreign, target_is_directory=True)
  with pytest.raises(workdir_lib.WorkdirError, match="outside the work directory"):
    layout.run(layout.LayoutConfig(layer="conv2", fit_sample=6, whiten=False), wd)
  assert [p.name for p in foreign.rglob("*")] == [layout.PARTIAL_DIR, "keep.txt"]
