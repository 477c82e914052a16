"""The batched renderer on the tiny custom CNN (fast, protocol-only)."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax.optvis import objectives as obj
from atlasjax.optvis import param
from atlasjax.optvis import render

# Pixel parameterization and no transforms compile fastest; the default
# (FFT + standard transforms) is exercised by the determinism test below.
BASE = render.RenderConfig(size=24, steps=12, lr=0.05, param="pixel",
                           transforms="none", redirect_relu_steps=0)
KEY = jax.random.PRNGKey(3)
VECS = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16)), jnp.float32)
S = jnp.asarray(np.eye(16) + 0.1, jnp.float32)

_LAYERS = ("conv1", "conv2", "logits")
_FAMILIES = (
    lambda a: obj.channel("conv2", a["index"]),
    lambda a: obj.neuron("conv1", a["index"]),
    lambda a: obj.deepdream("conv2"),
    lambda a: obj.direction("conv2", a["vec"]),
    lambda a: obj.direction_neuron("conv2", a["vec"]),
    lambda a: obj.direction_neuron_cossim("conv2", a["vec"], cossim_pow=4.0),
    lambda a: obj.direction_neuron_cossim("conv2", a["vec"], cossim_pow=4.0, whitening=S),
    lambda a: obj.class_logit(a["index"]),
    lambda a: obj.class_probability(a["index"]),
    lambda a: obj.channel("conv2", a["index"]) - 1e-4 * obj.total_variation()
    - 1e-4 * obj.l2() - 1e-5 * obj.l1(constant=0.5) - 1e-3 * obj.blur_input_each_step(),
)


def _any_family(a):
  """Item ``i`` optimises family ``a["family"]``: every family in one compile."""
  objs = [f(a) for f in _FAMILIES]
  return obj.Objective(
      lambda acts: jax.lax.switch(a["family"], [lambda x, o=o: o(x) for o in objs], acts),
      _LAYERS, "any")


def test_gradient_ascent_raises_every_objective(toy):
  model, params = toy
  n = len(_FAMILIES)
  args = {"family": jnp.arange(n), "index": jnp.arange(n) % 8,
          "vec": jnp.asarray(np.random.default_rng(0).normal(size=(n, 16)), jnp.float32)}
  r = render.render(model, params, _any_family, args=args, config=BASE, key=KEY)
  start = -np.asarray(r.losses[:, 0])       # objective at the initial image
  assert r.images.shape == (n, 24, 24, 3)
  assert r.losses.shape == (n, BASE.steps)
  assert np.all(np.asarray(r.values) > start), (start, r.values)
  assert float(r.images.min()) >= 0 and float(r.images.max()) <= 1


_CHANNEL = lambda c: obj.channel("conv2", c)
_STD = BASE.__class__(**{**BASE.__dict__, "transforms": "standard", "size": 32,
                          "param": "fft", "redirect_relu_steps": 4})


def test_batch_equals_stacked_single_renders_and_is_deterministic(toy):
  model, params = toy
  batch = render.render(model, params, _CHANNEL, args=jnp.arange(3), config=_STD, key=KEY)
  again = render.render(model, params, _CHANNEL, args=jnp.arange(3), config=_STD, key=KEY)
  np.testing.assert_array_equal(batch.images, again.images)
  singles = [render.render(model, params, _CHANNEL, args=jnp.array([i]), config=_STD,
                           key=KEY, item_ids=[i]) for i in range(3)]
  stacked = np.concatenate([np.asarray(s.images) for s in singles])
  np.testing.assert_allclose(batch.images, stacked, atol=2e-3)
  np.testing.assert_allclose(batch.values, [float(s.values[0]) for s in singles], rtol=1e-2, atol=1e-3)


def test_no_recompile_on_new_arguments(toy):
  model, params = toy
  class Traces:               # an object (not a list), so `make` keeps its
    count = 0                 # structural identity while the count changes

  def make(c):
    # Counts traces (the call-time index check also runs make, on values).
    Traces.count += isinstance(c, jax.core.Tracer)
    return obj.channel("conv2", c)

  cfg = BASE.__class__(**{**BASE.__dict__, "steps": 3})
  compiles = len(render.cache_info().compiles)
  render.render(model, params, make, args=jnp.arange(4), config=cfg, key=KEY)
  n = Traces.count
  assert n > 0
  params2 = jax.tree_util.tree_map(lambda x: x * 1.1, params)
  r = render.render(model, params2, make, args=jnp.arange(4, 8), config=cfg,
                    key=jax.random.PRNGKey(9))
  r.values.block_until_ready()
  assert Traces.count == n
  assert len(render.cache_info().compiles) <= compiles + 1   # 0 if cached before


def test_attempts_keep_best_and_chunking(toy):
  model, params = toy
  cfg = BASE.__class__(**{**BASE.__dict__, "attempts": 3})
  r = render.render(model, params, _CHANNEL, args=jnp.arange(5), config=cfg, key=KEY)
  assert r.attempt_values.shape == (5, 3)
  np.testing.assert_allclose(r.values, np.max(r.attempt_values, axis=1))
  chunked = render.render(model, params, _CHANNEL, args=jnp.arange(5), key=KEY,
                          config=cfg.__class__(**{**cfg.__dict__, "chunk_size": 2}))
  np.testing.assert_allclose(chunked.images, r.images, atol=2e-3)
  np.testing.assert_allclose(chunked.attempt_values, r.attempt_values, rtol=1e-2, atol=1e-3)


def test_joint_batch_objectives(toy):
  model, params = toy
  cfg = BASE.__class__(**{**BASE.__dict__, "images_per_item": 3})
  make = lambda c: obj.channel("conv2", c) + 10.0 * obj.diversity("conv1")
  r = render.render(model, params, make, args=jnp.arange(2), config=cfg, key=KEY)
  assert r.images.shape == (2, 3, 24, 24, 3)
  assert np.all(np.asarray(r.values) > -np.asarray(r.losses[:, 0]))
  frames = 4
  cfg = BASE.__class__(**{**BASE.__dict__, "images_per_item": frames, "size": 16})
  interp = lambda a: (obj.channel_interpolate("conv2", a[0], "conv2", a[1])
                      + 0.1 * obj.alignment("conv1"))
  r = render.render(model, params, interp, args=jnp.array([[0, 5]]), config=cfg, key=KEY,
                    param=param.shared_separate(16, frames))
  assert r.images.shape == (1, frames, 16, 16, 3)


def test_fixed_objective_alpha_and_progress(toy):
  model, params = toy
  seen = []
  cfg = BASE.__class__(**{**BASE.__dict__, "alpha": True, "transforms": "standard",
                          "steps": 10, "progress_every": 5, "redirect_relu_steps": 4})
  r = render.render(model, params, lambda: obj.channel("conv2", 0) - 1e-3 * obj.l1(),
                    config=cfg, key=KEY, progress=lambda *a: seen.append(a))
  r.values.block_until_ready()
  jax.effects_barrier()
  assert r.images.shape == (1, 24, 24, 4)
  assert [s[1] for s in seen] == [5, 10]


def test_redirected_relu_gradient():
  x = jnp.array([[-1.0, -2.0], [1.0, -1.0]])
  up = jax.grad(lambda x, a: -render.redirected_relu(x, a).sum())    # loss = -out
  # Row 0 is all negative: the ordinary gradient is zero; redirected, it pushes up.
  np.testing.assert_allclose(up(x, True), [[-1, -1], [-1, 0]])
  np.testing.assert_allclose(up(x, False), [[0, 0], [-1, 0]])
  down = jax.grad(lambda x: render.redirected_relu(x, True).sum())   # loss = +out
  np.testing.assert_allclose(down(x), [[0, 0], [1, 0]])   # never pushes negatives lower


_SHARDING_SCRIPT = textwrap.dedent("""
  import json, sys
  import jax, jax.numpy as jnp, numpy as np
  sys.path.insert(0, sys.argv[1])
  from toy_model import TOY_MODEL, toy_params
  from atlasjax.optvis import accentuate as acc, objectives as obj, render
  assert len(jax.local_devices()) == 4, jax.local_devices()
  # MaCo (an inverse FFT per item) with its transparency map and the standard
  # transforms: 4 devices, one device, and item 5 rendered alone. (The
  # renderer's sharded path is the same for every parameterization; MaCo's
  # FFT is the part that once failed there.)
  one = jax.local_devices()[:1]
  cfg = render.RenderConfig(size=24, steps=6, param="maco", transforms="standard",
                            alpha_map=True, chunk_size=4)
  make = lambda c: obj.channel("conv2", c)
  params = toy_params()
  sharded = render.render(TOY_MODEL, params, make, args=jnp.arange(6), config=cfg)
  renderer = render.build(TOY_MODEL, make, cfg)
  ids = renderer.shard(np.arange(4, dtype=np.int32))
  out = renderer.run_chunk(renderer.shard(params, replicate=True), jax.random.PRNGKey(0),
                           ids, renderer.shard(jnp.arange(4)))
  single = render.render(TOY_MODEL, params, make, args=jnp.arange(6), config=cfg,
                         devices=one)
  alone = render.render(TOY_MODEL, params, make, jnp.array([5]), cfg, devices=one,
                        item_ids=[5])
  diff = lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max())
  result = {"devices": len(out[0].sharding.device_set),
            "max_diff": diff(sharded.images, single.images),
            "shape": list(sharded.images.shape),
            "alpha": diff(sharded.alpha_map, single.alpha_map)
            / float(np.max(single.alpha_map)),
            "alone": diff(sharded.images[5], alone.images[0]),
            "rise": float(np.mean(sharded.losses[:, 0] - sharded.losses[:, -1]))}
  # Feature accentuation (render(..., start=photo spectra)) of 4 photos.
  photos = jax.image.resize(jax.random.uniform(jax.random.PRNGKey(1), (4, 6, 6, 3)),
                            (4, 24, 24, 3), "linear")
  acfg = render.dataclasses.replace(acc.DEFAULT_CONFIG, steps=4, chunk_size=4,
                                    cpu_rewrite=False)
  run = lambda p, c, w, d: acc.accentuate(TOY_MODEL, params, p, make, jnp.asarray(c),
                                          "conv1", jnp.asarray(w), acfg, devices=d)
  sharded = run(photos, [0, 1, 2, 3], [0.0, 0.5, 1.0, 2.0], None)
  single = run(photos, [0, 1, 2, 3], [0.0, 0.5, 1.0, 2.0], one)
  alone = run(photos[3:], [3], [2.0], one)
  result["accentuate"] = {"images": diff(sharded.images, single.images),
                          "gain": diff(sharded.gain, single.gain),
                          "distance": diff(sharded.distance, single.distance),
                          "alone": diff(sharded.images[3], alone.images[0]),
                          "min_gain": float(np.min(sharded.gain))}
  print(json.dumps(result))
""")


def test_sharded_over_four_cpu_devices_matches_single_device():
  """MaCo (+ alpha map) and accentuation: 4 CPU devices == 1 device == alone."""
  repo = pathlib.Path(__file__).resolve().parents[2]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run([sys.executable, "-c", _SHARDING_SCRIPT, str(repo / "tests")],
                       env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["devices"] == 4
  assert result["shape"] == [6, 24, 24, 3]
  # The same per-item program on 4 devices as on one, so only float32
  # reassociation differs (measured ≤ 5e-6); 1e-4 is 40× below one 8-bit
  # level, while a sharding mistake (an item's phase, photo or target on
  # another item's device) moves pixels by tenths. Before the renderer ran
  # the parameterization per device, a sharded MaCo render failed inside
  # XLA's CPU FFT kernel.
  accent = result["accentuate"]
  assert result["rise"] > 0 and accent["min_gain"] > 0     # they optimised
  assert result["max_diff"] < 1e-4 and result["alone"] < 1e-4
  assert result["alpha"] < 1e-4                             # relative to its max
  assert accent["images"] < 1e-4 and accent["alone"] < 1e-4
  assert accent["gain"] < 1e-3 and accent["distance"] < 1e-4


def test_views_below_the_model_minimum_raise_a_clear_error(toy):
  model, params = toy
  strict = dataclasses.replace(model, min_size=30)
  cfg = BASE.__class__(**{**BASE.__dict__, "size": 24})
  with pytest.raises(render.RenderError, match=r"at least 30 px.*size=30"):
    render.render(strict, params, _CHANNEL, args=jnp.arange(2), config=cfg, key=KEY)
  # A preset is rebuilt for each candidate size: 48 px atlas icons give 30 px
  # views (5/8, rounded), so 49 px is the smallest that reaches a 31 px minimum.
  strict31 = dataclasses.replace(model, min_size=31)
  small_atlas = BASE.__class__(**{**BASE.__dict__, "size": 48, "transforms": "atlas"})
  with pytest.raises(render.RenderError, match=r"into 30 px views; render at size=49 or"):
    render.render(strict31, params, _CHANNEL, args=jnp.arange(2), config=small_atlas,
                  key=KEY)
  # No grey padding any more: the network sees the transformed view itself.
  seen = []
  spy = dataclasses.replace(model, apply=lambda p, x, **kw: (
      seen.append(x.shape), model.apply(p, x, **kw))[1])
  atlas_cfg = BASE.__class__(**{**BASE.__dict__, "size": 32, "transforms": "atlas",
                                "steps": 2})
  render.render(spy, params, _CHANNEL, args=jnp.arange(2), config=atlas_cfg, key=KEY)
  assert (2, 20, 20, 3) in seen     # 2 items, 32 px icons → 20 px full-frame views


def test_precision_modes(toy):
  model, params = toy
  with pytest.raises(render.RenderError, match="precision"):
    render.build(model, _CHANNEL, BASE.__class__(**{**BASE.__dict__, "precision": "fp8"}))
  results = {}
  for precision in ("float32", "bfloat16"):
    cfg = BASE.__class__(**{**BASE.__dict__, "precision": precision})
    r = render.render(model, params, _CHANNEL, args=jnp.arange(2), config=cfg, key=KEY)
    assert r.images.dtype == jnp.float32
    assert np.all(np.asarray(r.values) > -np.asarray(r.losses[:, 0]))
    results[precision] = np.asarray(r.images)
  # bfloat16 changes the network's rounding, not what is optimised.
  assert np.abs(results["float32"] - results["bfloat16"]).mean() < 0.05


def test_accelerator_suite_tiny_runs_on_cpu(data_root):
  """``bench/accelerator_suite.py --tiny``: the GPU suite's whole path, tiny."""
  repo = pathlib.Path(__file__).resolve().parents[2]
  env = dict(os.environ, ATLASJAX_DATA=str(data_root),
             PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run([sys.executable, str(repo / "bench" / "accelerator_suite.py"),
                        # bfloat16 renders are tested in this file and in
                        # test_maco.py; on CPU they would double this run.
                        "--tiny", "--precision=float32"],
                       env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
  by = {(r["workload"], r.get("precision")): r for r in rows}
  icons = by[("icons", "float32")]
  assert icons["batch"] == 2 and icons["icons_per_sec"] > 0 and icons["tflops"] > 0
  assert by[("render128", "float32")]["image_steps_per_sec"] > 0
  assert by[("largest_batch", "float32")]["largest_batch"] == 2
  assert all(r.get("precision") in (None, "float32") for r in rows)
  assert rows[-1]["workload"] == "summary"


def test_one_network_call_equals_per_item_losses_and_gradients(toy):
  model, params = toy
  cfg = BASE.__class__(**{**BASE.__dict__, "size": 32, "transforms": "standard",
                          "param": "fft", "redirect_relu_steps": 4, "images_per_item": 2})
  make = lambda c: obj.channel("conv2", c) + obj.diversity("conv1")
  r = render.build(model, make, cfg)
  raw, _, args, keys = r.init(KEY, jnp.arange(3), jnp.arange(3))
  # Jitted (one program each, not op-by-op dispatch of the whole transform stack).
  per_item_fn = jax.jit(jax.vmap(jax.value_and_grad(r._loss), in_axes=(0, 0, 0, None, None)))
  batched_fn = jax.jit(jax.value_and_grad(
      lambda x, step: r._losses(x, args, keys, step, params).sum()))
  losses_fn = jax.jit(lambda step: r._losses(raw, args, keys, step, params))
  for step in (0, 5):        # with and without ReLU redirection
    per_item = per_item_fn(raw, args, keys, jnp.int32(step), params)
    batched = batched_fn(raw, jnp.int32(step))
    np.testing.assert_allclose(losses_fn(jnp.int32(step)), per_item[0], rtol=1e-5)
    np.testing.assert_allclose(batched[1], per_item[1], rtol=1e-4, atol=1e-7)


def test_host_loop_matches_scan(toy):
  model, params = toy
  cfg = BASE.__class__(**{**BASE.__dict__, "attempts": 2, "steps": 6,
                          "progress_every": 3, "redirect_relu_steps": 2})
  seen = []
  scan = render.render(model, params, _CHANNEL, args=jnp.arange(3), config=cfg, key=KEY,
                       progress=lambda *a: None)
  host = render.render(model, params, _CHANNEL, args=jnp.arange(3), key=KEY,
                       config=dataclasses.replace(cfg, loop="host"),
                       progress=lambda *a: seen.append(a[1]))
  np.testing.assert_allclose(host.images, scan.images, atol=1e-4)
  np.testing.assert_allclose(host.losses, scan.losses, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(host.attempt_values, scan.attempt_values, rtol=1e-4)
  assert seen == [3, 6]
