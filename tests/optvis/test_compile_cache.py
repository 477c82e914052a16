"""Compile once, visibly: the in-process cache keyed on structure, per-item
hyperparameters under one compile, and the persistent cache across processes."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np

from atlasjax import compilation_cache
from atlasjax.optvis import objectives as O
from atlasjax.optvis import render

REPO = pathlib.Path(__file__).resolve().parents[2]
CFG = render.RenderConfig(size=24, steps=3, param="pixel", transforms="none",
                          redirect_relu_steps=0)


def _compiles() -> int:
  return len(render.cache_info().compiles)


def test_retyped_identical_lambda_hits_and_a_new_constant_misses(toy):
  model, params = toy
  before = render.cache_info()
  a = render.render(model, params, lambda c: O.channel("conv2", c) - 1e-3 * O.l2(),
                    np.arange(2), CFG)
  # The same lambda typed again, on other lines:
  b = render.render(model, params,
                    lambda c: O.channel("conv2", c)
                    - 1e-3 * O.l2(),
                    np.arange(2), CFG)
  after_hit = render.cache_info()
  assert after_hit.misses == before.misses + 1
  assert after_hit.hits == before.hits + 1
  assert len(after_hit.compiles) == len(before.compiles) + 1
  np.testing.assert_array_equal(a.images, b.images)
  render.render(model, params, lambda c: O.channel("conv2", c) - 2e-3 * O.l2(),
                np.arange(2), CFG)
  assert render.cache_info().misses == after_hit.misses + 1   # another constant


def test_per_item_cossim_pow_is_one_compile_and_equals_single_renders(toy):
  model, params = toy
  vecs = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
  pows = np.array([0.0, 1.0, 4.0], np.float32)
  make = lambda a: O.direction_neuron_cossim("conv2", a["v"], cossim_pow=a["p"])
  cfg = render.RenderConfig(size=24, steps=3, param="pixel", transforms="none",
                            redirect_relu_steps=0, chunk_size=3)
  before = _compiles()
  batch = render.render(model, params, make, {"v": vecs, "p": pows}, cfg)
  assert _compiles() == before + 1
  for i in range(3):
    one = render.render(model, params, make, {"v": vecs[i:i + 1], "p": pows[i:i + 1]},
                        cfg, item_ids=[i])
    np.testing.assert_array_equal(one.images[0], batch.images[i])
  assert _compiles() == before + 1
  # Per item, each power gives its own objective: the closed-over constant
  # renders the same image.
  fixed = render.render(model, params,
                        lambda v: O.direction_neuron_cossim("conv2", v, cossim_pow=4.0),
                        vecs[2:], cfg, item_ids=[2])
  np.testing.assert_allclose(fixed.values[0], batch.values[2], rtol=1e-5)


_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import toy_model
    from atlasjax import compilation_cache
    from atlasjax.optvis import objectives as O, render
    cfg = render.RenderConfig(size=24, steps=2, param="pixel", transforms="none",
                              redirect_relu_steps=0)
    render.render(toy_model.TOY_MODEL, toy_model.toy_params(),
                  lambda c: O.channel("conv1", c), np.arange(2), cfg)
    c = render.cache_info().compiles[-1]
    folder = compilation_cache.directory()
    print(json.dumps({"from_disk": c.from_disk, "seconds": c.seconds,
                      "dir": str(folder) if folder else None}))
""")


def _run(env_value: str) -> dict:
  env = dict(os.environ, ATLASJAX_COMPILATION_CACHE=env_value,
             PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
  out = subprocess.run([sys.executable, "-c", _SCRIPT, str(REPO / "tests")], env=env,
                       capture_output=True, text=True, timeout=600, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_program_from_disk(tmp_path):
  folder = tmp_path / "xla"
  first, second = _run(str(folder)), _run(str(folder))
  assert first["dir"] == str(folder) and not first["from_disk"]
  assert second["from_disk"]
  assert any(folder.iterdir())
  off = _run("off")
  assert off["dir"] is None and not off["from_disk"]


def test_default_folder_is_the_user_cache(monkeypatch, tmp_path):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compilation_cache.default_dir() == tmp_path / "atlasjax" / "jax"
