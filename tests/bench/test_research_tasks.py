"""Issue 27's five research tasks as the docs write them (bench/research_tasks.py),
on the toy CNN: each renders, costs exactly the compiles it must, and a retyped
family or new per-item hyperparameters cost none."""

import importlib.util
import pathlib
import sys

import jax
import numpy as np

from atlasjax.optvis import render

_SCRIPT = pathlib.Path(__file__).parents[2] / "bench" / "research_tasks.py"
_spec = importlib.util.spec_from_file_location("research_tasks", _SCRIPT)
research_tasks = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = research_tasks      # dataclasses look their module up
_spec.loader.exec_module(research_tasks)

# Render compiles each step must cost, in research_tasks.run's order.
EXPECTED_COMPILES = {
    "1 four channels": 1,
    "2 push-pull": 1,
    "2 caricature": 1,
    "3 eight directions, per-item cossim_pow": 1,
    "4 NNX CNN and linen ViT": 2,
    "5 atlas icons, custom family": 1,
    "1 again, family retyped": 0,
    "3 again, other per-item powers": 0,
}


def test_five_tasks_compile_once_each_and_repeats_not_at_all(toy, linear_umap):
  del linear_umap          # the atlas's layout without UMAP's numba compile
  model, params = toy
  render.cache_clear()     # count from an empty in-process cache
  records = research_tasks.run(model, params, research_tasks.TOY,
                               render.RenderConfig(size=32, steps=3))
  assert {r["task"]: r["compiles"] for r in records} == EXPECTED_COMPILES
  repeats = [r for r in records if "again" in r["task"]]
  assert [(r["hits"], r["misses"]) for r in repeats] == [(1, 0), (1, 0)]


def lucid_dot_cossim(acts, vec, power):
  """Lucid's _dot_cossim in NumPy: mean of a·v · max(0.1, cos(a, v)) ** power."""
  dot = acts @ vec
  cos = dot / np.linalg.norm(acts, axis=-1) / np.linalg.norm(vec)
  return float(np.mean(dot * np.maximum(0.1, cos) ** power))


def test_per_item_powers_score_each_item_with_its_own_power(toy):
  model, params = toy
  units, key = research_tasks.TOY, jax.random.PRNGKey(0)
  result = research_tasks.directions(
      model, params, units, render.RenderConfig(size=32, steps=3), key)
  layer = units.directions
  vecs = np.asarray(jax.random.normal(key, (len(research_tasks.POWERS),
                                           model.layer(layer).depth)))
  acts = np.asarray(model.apply(params, result.images, layers=(layer,))[layer])
  want = [lucid_dot_cossim(acts[i], vecs[i], p)
          for i, p in enumerate(research_tasks.POWERS)]
  np.testing.assert_allclose(np.asarray(result.values), want, rtol=2e-3, atol=1e-5)
