"""MaCo: the magnitude-constrained parameterization, its spectrum, crops and
transparency maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax.optvis import objectives as obj
from atlasjax.optvis import param
from atlasjax.optvis import render
from atlasjax.optvis import spectrum
from atlasjax.optvis import transform

SIZE = 24


def _magnitude(seed=0, size=SIZE):
  rng = np.random.default_rng(seed)
  f = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2
              + np.fft.rfftfreq(size)[None, :] ** 2)
  return (rng.uniform(0.5, 1.5, (3, size, size // 2 + 1))
          / np.maximum(f, 1.0 / size)).astype(np.float32)


def _numpy_maco(phase, magnitude, eps=param.MACO_EPS):
  """The construction written out from the paper, Xplique and horama."""
  phase = phase.astype(np.float64)
  phase = (phase - phase.mean()) / (phase.std() + eps)
  img = np.fft.irfft2(magnitude * (np.cos(phase) + 1j * np.sin(phase)),
                      s=(SIZE, SIZE))
  img = (img - img.mean()) / (img.std() + eps)
  rgb = np.moveaxis(img, 0, -1) @ param.COLOR_CORRELATION_NORMALIZED.T
  return 1.0 / (1.0 + np.exp(-rgb))


def test_presigmoid_spectrum_has_the_target_magnitude():
  m = _magnitude()
  p = param.maco_image(SIZE, m, batch=2)
  t = np.asarray(jax.jit(p.to_rgb)(p.init(jax.random.PRNGKey(0))), np.float64)
  got = np.abs(np.fft.rfft2(np.moveaxis(t, -1, 1)))   # [2, 3, h, fw]
  # Columns 1 … w/2−1 are free complex coefficients (column 0 and the
  # Nyquist column are made Hermitian by irfft2): |F| = s · magnitude there.
  ratio = got[..., 1:-1] / m[..., 1:-1]
  for r in ratio:
    np.testing.assert_allclose(r, r.mean(), rtol=1e-4)


def test_construction_matches_numpy_reference():
  m = _magnitude(1)
  raw = param.maco_image(SIZE, m).init(jax.random.PRNGKey(2))
  ours = jax.jit(param.finish(param.maco_image(SIZE, m)).to_rgb)(raw)
  np.testing.assert_allclose(np.asarray(ours[0]), _numpy_maco(np.asarray(raw[0]), m),
                             atol=2e-5)


def test_image_kind_maco_uses_the_sample_spectrum():
  p = param.image(SIZE, batch=2, kind="maco")
  images = jax.jit(p.to_rgb)(p.init(jax.random.PRNGKey(0)))
  assert images.shape == (2, SIZE, SIZE, 3)
  assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
  with pytest.raises(ValueError, match="no alpha channel"):
    param.image(SIZE, kind="maco", alpha=True)


def test_default_spectrum_is_natural_and_resizes():
  m = spectrum.default_magnitude(SIZE)
  assert m.shape == (3, SIZE, SIZE // 2 + 1)
  full = spectrum.default_magnitude(spectrum.ESTIMATE_SIZE)
  # Natural images: |F| ∝ 1/f^α with α ≈ 1 … 2 (Field 1987).
  assert -2.2 < spectrum.loglog_slope(full) < -0.8
  # Low frequencies sit at the same corners after resizing.
  assert m[0, 0, 0] == m[0].max()
  np.testing.assert_array_equal(spectrum.resize(m, (SIZE, SIZE)), m)


def test_estimate_is_the_mean_decorrelated_magnitude(tmp_path):
  from PIL import Image
  rng = np.random.default_rng(0)
  photos = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
  paths = []
  for i, a in enumerate(photos):
    paths.append(str(tmp_path / f"{i}.png"))
    Image.fromarray(a).save(paths[-1])
  got = spectrum.estimate(paths, size=16)
  x = photos.astype(np.float64) / 255.0
  t = x @ np.linalg.inv(param.COLOR_CORRELATION_NORMALIZED.astype(np.float64).T)
  want = np.abs(np.fft.rfft2(np.moveaxis(t, -1, 1))).mean(0)
  np.testing.assert_allclose(got, want, rtol=1e-4)
  np.testing.assert_allclose(
      np.asarray(param.decorrelate_color(spectrum.decorrelate(x))), x, atol=1e-5)


def test_maco_crops_shrink_and_return_many_views():
  ramp = jnp.broadcast_to(jnp.linspace(0.0, 1.0, 64)[None, :, None], (64, 64, 3))
  t = transform.maco_crops(16, crops=8, box=(0.8, 0.2), noise=0.0, fill=0.5)
  keys = jax.random.split(jax.random.PRNGKey(0), 8)
  views_at = jax.jit(jax.vmap(lambda k, p: t(k, ramp, p), in_axes=(0, None)))
  spans = {}
  for progress in (0.0, 1.0):
    views = views_at(keys, progress)
    assert views.shape == (8, 8, 16, 16, 3)
    inside = views[:, :, 8, :, 0]   # a row: the ramp's span is the box side
    spans[progress] = float(jnp.median(inside.max(-1) - inside.min(-1)))
  assert 0.6 < spans[0.0] < 0.85 and 0.1 < spans[1.0] < 0.3


def test_maco_renders_batched_equal_single_with_alpha_map(toy):
  model, params = toy
  cfg = render.RenderConfig(size=SIZE, steps=3, param="maco", transforms="maco",
                            alpha_map=True, chunk_size=3, redirect_relu_steps=0,
                            cpu_rewrite=False)
  make = lambda c: obj.channel("conv2", c)
  key = jax.random.PRNGKey(1)
  batch = render.render(model, params, make, jnp.arange(3), cfg, key)
  single = render.render(model, params, make, jnp.array([2]), cfg, key, item_ids=[2])
  np.testing.assert_allclose(np.asarray(single.images[0]), np.asarray(batch.images[2]),
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(single.alpha_map[0]),
                             np.asarray(batch.alpha_map[2]), rtol=1e-5, atol=1e-9)
  assert batch.alpha_map.shape == batch.images.shape
  assert float(batch.alpha_map.min()) >= 0.0 and float(batch.alpha_map.max()) > 0.0
  # The objective rose through the phase alone.
  assert float(-batch.losses[:, -1].mean()) > float(-batch.losses[:, 0].mean())


def test_alpha_map_is_the_summed_image_gradient(toy):
  model, params = toy
  cfg = render.RenderConfig(size=SIZE, steps=1, param="pixel", transforms="standard",
                            alpha_map=True, redirect_relu_steps=0, cpu_rewrite=False)
  make = lambda c: obj.channel("conv2", c)
  key = jax.random.PRNGKey(0)
  out = render.render(model, params, make, jnp.arange(2), cfg, key)
  r = render.build(model, render.family_lib.keyed(make), cfg)
  raw, _, args, keys = r.init(key, jnp.arange(2), jnp.arange(2))
  zeros = jnp.zeros((2, 1, SIZE, SIZE, 3))
  g = jax.jit(jax.grad(
      lambda o: r._losses(raw, args, keys, jnp.int32(0), params, o).sum()))(zeros)
  np.testing.assert_allclose(np.asarray(out.alpha_map), np.abs(np.asarray(g[:, 0])),
                             rtol=1e-4, atol=1e-9)
  plain = render.render(model, params, make, jnp.arange(2),
                        render.dataclasses.replace(cfg, alpha_map=False), key)
  assert plain.alpha_map is None
  np.testing.assert_array_equal(np.asarray(plain.images), np.asarray(out.images))


def test_atlas_icons_take_the_parameterization():
  from atlasjax.atlas import render_atlas
  config = render_atlas.AtlasConfig(param="maco")
  assert config.render_config().param == "maco"
  assert render_atlas.AtlasConfig().render_config().param == "fft"


def test_maco_in_bfloat16_stays_close_to_float32(toy):
  """The network runs in bfloat16; the phase, its inverse FFT, the colour
  recorrelation, the objective and Adam stay in float32."""
  model, params = toy
  make = lambda c: obj.channel("conv2", c)
  out = {}
  for precision in ("float32", "bfloat16"):
    # float32: the program of test_maco_renders_batched_equal_single_with_alpha_map
    # (compiled once per test process).
    cfg = render.RenderConfig(size=SIZE, steps=3, param="maco", transforms="maco",
                              alpha_map=True, chunk_size=3, redirect_relu_steps=0,
                              cpu_rewrite=False, precision=precision)
    out[precision] = render.render(model, params, make, jnp.arange(3), cfg,
                                   jax.random.PRNGKey(1))
  f32, bf16 = out["float32"], out["bfloat16"]
  assert bf16.images.dtype == jnp.float32 and bf16.alpha_map.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(bf16.images)))
  assert np.all(np.isfinite(np.asarray(bf16.alpha_map)))
  # The objective on MaCo's crops rose (as in float32).
  assert float(-bf16.losses[:, -1].mean()) > float(-bf16.losses[:, 0].mean())
  # Measured after 3 steps: mean |Δimage| 0.0004, alpha maps 0.6 % apart,
  # objectives 0.4 % (bfloat16 keeps ~3 significant digits; after 8 steps
  # without crops: 0.004, 2 %, 0.5 %).
  assert float(jnp.abs(f32.images - bf16.images).mean()) < 0.005
  assert float(jnp.abs(f32.alpha_map - bf16.alpha_map).mean()
               / f32.alpha_map.mean()) < 0.05
  np.testing.assert_allclose(bf16.values, f32.values, rtol=0.02)
