"""Issue 27, item 5: your own icon objective, parameterization and transforms.

One toy-CNN atlas (8 photos, a 2×2 grid, 32 px icons, 6 steps) is built by
the pipeline with a registered objective factory, which must receive the
layout's whitening; then it is re-rendered in place with a plain family and
a registered parameterization and transforms: its icons must equal a direct
render of that family on the grid's saved directions, and the atlas image,
fidelity figures, run record and viewer must follow.
"""

import dataclasses
import hashlib
import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import atlasjax.atlas
from atlasjax import progress
from atlasjax.atlas import collect
from atlasjax.atlas import layout
from atlasjax.atlas import pipeline
from atlasjax.atlas import rebuild
from atlasjax.atlas import render_atlas
from atlasjax.atlas import variants
from atlasjax.optvis import objectives
from atlasjax.optvis import param as param_lib
from atlasjax.optvis import registry
from atlasjax.optvis import render as render_lib
from atlasjax.optvis import transform as transform_lib

LAYER = "conv2"
CONFIG = pipeline.PipelineConfig(
    collect=collect.CollectConfig(layers=(LAYER,), crops_per_image=2,
                                  image_size=32, batch_size=16, shard_images=8),
    layout=layout.LayoutConfig(layer=LAYER, n_neighbors=4),
    atlas=render_atlas.AtlasConfig(layer=LAYER, grid_sizes=(2,),
                                   min_density=(0,), icon_size=32, steps=6,
                                   param="pixel", transforms="none",
                                   objective="test_icons_cosine", n_examples=2),
    viewer=True)
PARAM_NAME, TRANSFORMS_NAME, OBJECTIVE_NAME = (
    "test_icons_pixel", "test_icons_jitter", "test_icons_cosine")


def plain_push(direction):
  # The cell's own (unwhitened) direction, a plain dot product. (No
  # docstring: a lambda typed with the same body is the same family.)
  return objectives.direction(LAYER, direction)


# The same family typed again (at module level, as plain_push: the key
# includes the code's flags, and code nested in a function is flagged so).
retyped_push = lambda direction: objectives.direction(LAYER, direction)


def pixel_param(size, batch, *, decorrelate, alpha):
  return param_lib.image(size, batch, "pixel", decorrelate, alpha=alpha)


def jitter_transforms(size, *, alpha):
  del size, alpha
  return transform_lib.jitter(2)


# What cosine_factory was called with, per layer (a Python-level call).
RECEIVED = {}


def cosine_factory(layer, *, whitening, cossim_pow):
  """The built-in cosine form, rebuilt by hand from what the atlas passes."""
  RECEIVED[layer] = (whitening, cossim_pow)
  return lambda d: objectives.direction_neuron_cossim(
      layer, d, cossim_pow=cossim_pow, whitening=whitening, form="cosine")


registry.register_param(PARAM_NAME, pixel_param)
registry.register_transforms(TRANSFORMS_NAME, jitter_transforms)
registry.register_objective(OBJECTIVE_NAME, cosine_factory)


def tree_hash(folder):
  return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def icons(workdir, atlas):
  (grid,) = atlas["grids"]
  return np.stack([np.asarray(Image.open(workdir / c["icon"]))
                   for c in grid["cells"]])


def linear_umap_class(config):
  """tests/conftest.py's LinearUmap (the name ``conftest`` may be another
  folder's when several test folders run together)."""
  root = pathlib.Path(__file__).resolve().parents[1] / "conftest.py"
  return next(p.LinearUmap for p in config.pluginmanager.get_plugins()
              if pathlib.Path(getattr(p, "__file__", None) or "/").resolve() == root)


@pytest.fixture(scope="module")
def built(toy, sample_dir, tmp_path_factory, request):
  """The toy atlas with a registered objective (UMAP stood in by LinearUmap)."""
  model, params = toy
  stand_in = linear_umap_class(request.config)
  photos = tmp_path_factory.mktemp("photos")
  for path in sorted(sample_dir.glob("*.jpg"))[:8]:
    shutil.copy(path, photos / path.name)
  work = tmp_path_factory.mktemp("atlas")
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(layout, "_reducer", lambda *a, **k: stand_in())
    pipeline.run(CONFIG, model, params, photos, work)
  return work, photos


def test_registered_factory_receives_the_whitening(built):
  workdir, _ = built
  atlas = json.loads((workdir / "atlas.json").read_text())
  described = atlas["config"]["objective"]
  assert described["spec"] == OBJECTIVE_NAME and len(described["key"]) == 16
  assert described["factory"] == "cosine_factory"
  whitening, cossim_pow = RECEIVED[LAYER]
  np.testing.assert_array_equal(np.asarray(whitening),
                                np.load(workdir / atlas["grids"][0]["whitening"]))
  assert cossim_pow == CONFIG.atlas.cossim_pow
  recorded = json.loads((workdir / "run_config.json").read_text())
  assert recorded["atlas"]["objective"] == described
  assert (workdir / "index.html").is_file()


def test_custom_family_param_and_transforms_rerender_everything(built, toy):
  (workdir, _), (model, params) = built, toy
  before = json.loads((workdir / "atlas.json").read_text())
  old_icons = icons(workdir, before)
  old_png = (workdir / "grid_2" / "atlas.png").read_bytes()
  chunks_before = set((workdir / "grid_2").glob("chunks_*"))
  viewer_data = workdir / "viewer" / "data" / "atlas.js"
  viewer_before = viewer_data.stat().st_mtime_ns
  changes = dict(objective=plain_push, param=PARAM_NAME,
                 transforms=TRANSFORMS_NAME)
  (path,) = rebuild.rerender(workdir, model, params, **changes)
  after = json.loads(path.read_text())
  config = after["config"]
  assert config["objective"]["family"] == "plain_push"
  assert (config["param"], config["transforms"]) == (PARAM_NAME, TRANSFORMS_NAME)
  # The icons are the family's renders of the grid's own directions.
  (grid,) = after["grids"]
  directions = np.load(workdir / grid["directions"])
  atlas_config = rebuild.recorded_config(before, changes)
  expected = render_lib.render(
      model, params, plain_push, jnp.asarray(directions),
      dataclasses.replace(atlas_config.render_config(), chunk_size=len(directions)),
      jax.random.fold_in(jax.random.PRNGKey(atlas_config.seed), 2),
      item_ids=np.arange(len(directions)))
  got = icons(workdir, after)
  np.testing.assert_array_equal(got, render_atlas.checked_icons(
      expected.images, expected.values, 0, LAYER))
  assert not np.array_equal(got, old_icons)
  # Rendered afresh, into a chunk cache keyed by the new settings.
  assert set((workdir / "grid_2").glob("chunks_*")) > chunks_before
  assert after["collection"] == before["collection"]   # the pipeline's keys kept
  recorded = json.loads((workdir / "run_config.json").read_text())
  assert recorded["atlas"]["objective"] == config["objective"]
  assert "atlas" in recorded["built"]
  # What follows from the icons followed: image, fidelity, viewer.
  assert (workdir / "grid_2" / "atlas.png").read_bytes() != old_png
  want = render_atlas.icon_fidelity(model, params, LAYER, got, directions,
                                    np.load(workdir / grid["whitening"]))
  assert grid["fidelity"] == want
  assert viewer_data.stat().st_mtime_ns > viewer_before
  # The same family typed again resumes the saved chunks: nothing compiles.
  compiles = len(render_lib.cache_info().compiles)
  with progress.capture() as events:
    rebuild.rerender(workdir, model, params, objective=retyped_push,
                     param=PARAM_NAME, transforms=TRANSFORMS_NAME)
  assert len(render_lib.cache_info().compiles) == compiles
  starts = [e for e in events if e.kind == "start" and e.desc.startswith("icons")]
  assert starts and all(e.n == e.total for e in starts)   # every chunk cached


def test_the_fingerprint_follows_the_family_structure():
  base = render_atlas.AtlasConfig(objective=plain_push)
  key = lambda objective: render_atlas.config_json(
      dataclasses.replace(base, objective=objective))["objective"]["key"]
  retyped = lambda d: objectives.direction(LAYER, d)
  assert key(retyped) == key(lambda d: objectives.direction(LAYER, d))
  assert key(retyped) != key(lambda d: objectives.direction("conv1", d))
  assert key(retyped) != key(lambda d: 2.0 * objectives.direction(LAYER, d))
  # A form stays its name: existing work directories keep their keys.
  assert render_atlas.config_json(render_atlas.AtlasConfig())["objective"] == "cosine"


@pytest.mark.parametrize("bad, needle", [
    (lambda d: d.sum(), "Objective"),
    (lambda d: objectives.direction("conv9", d), "conv9"),
    (lambda d: objectives.Objective(lambda acts: acts[LAYER].mean((0, 1, 2)),
                                    (LAYER,)), "scalar"),
    (lambda d: objectives.channel(LAYER, 0 if d[0] > 0 else 1), "Python value"),
    ("no_such_family", "register_objective"),
    ("no_such_module:icons", "cannot import"),
])
def test_a_bad_objective_fails_in_one_line_before_any_write(built, toy, bad,
                                                            needle, tmp_path):
  (workdir, photos), (model, params) = built, toy
  before = tree_hash(workdir)
  with pytest.raises(render_atlas.AtlasError, match=needle) as e:
    rebuild.rerender(workdir, model, params, objective=bad)
  assert "\n" not in str(e.value) and str(e.value).startswith("--objective=")
  assert tree_hash(workdir) == before
  with pytest.raises(rebuild.RerenderError, match="no atlas of mixed4c"):
    rebuild.rerender(workdir, model, params, layers=["mixed4c"],
                     objective=plain_push)
  # The pipeline refuses it before its first stage writes anything.
  fresh = tmp_path / "fresh"
  config = dataclasses.replace(CONFIG, atlas=dataclasses.replace(
      CONFIG.atlas, objective=bad))
  with pytest.raises(render_atlas.AtlasError, match=needle):
    pipeline.run(config, model, params, photos, fresh)
  assert not fresh.exists() or not any(fresh.iterdir())


def test_a_class_atlas_renders_with_a_custom_family(built, toy, linear_umap):
  (workdir, _), (model, params) = built, toy
  attributions = collect.Collection.open(workdir).load(
      [f"attributions/{LAYER}"])[f"attributions/{LAYER}"]
  winners = np.bincount(np.argmax(attributions, axis=1), minlength=10)
  class_index = int(np.argmax(winners))
  config = variants.ClassAtlasConfig(
      atlas=dataclasses.replace(CONFIG.atlas, objective=plain_push,
                                param=PARAM_NAME, transforms=TRANSFORMS_NAME),
      top_k=len(attributions))
  path = variants.class_atlas(config, model, params, workdir, class_index)
  atlas = json.loads(path.read_text())
  assert atlas["config"]["objective"]["family"] == "plain_push"
  (grid,) = atlas["grids"]
  directions = np.load(workdir / grid["directions"])
  got = icons(workdir, atlas)
  # Each icon is what plain_push makes of its own cell's direction (one
  # render per icon, key as the atlas folds it).
  key = jax.random.fold_in(jax.random.PRNGKey(CONFIG.atlas.seed), 2)
  render_config = dataclasses.replace(
      config.atlas.render_config(), chunk_size=len(got))
  expected = render_lib.render(model, params, plain_push, jnp.asarray(directions),
                               render_config, key,
                               item_ids=np.arange(len(directions)))
  np.testing.assert_array_equal(got, render_atlas.checked_icons(
      expected.images, expected.values, 0, LAYER))
