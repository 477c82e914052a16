"""Image parameterizations: formulas, ranges, shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax.optvis import param

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("h,w", [(8, 8), (6, 9), (7, 5)])
def test_spectrum_scale_formula(h, w):
  scale = param.spectrum_scale(h, w)
  fw = w // 2 + (2 if w % 2 else 1)
  assert scale.shape == (h, fw)
  for i in range(h):
    for j in range(fw):
      fy = i / h if i <= (h - 1) // 2 else (i - h) / h
      fx = j / w if j <= (w - 1) // 2 else (j - w) / w
      f = np.hypot(fx, fy)
      want = np.sqrt(w * h) / max(f, 1.0 / max(w, h)) ** 1.0
      np.testing.assert_allclose(scale[i, j], want, rtol=1e-5)


def test_fft_image_is_scaled_inverse_fft():
  p = param.fft_image(8, batch=1, channels=3)
  raw = p.init(KEY)
  assert raw.shape == (1, 3, 2, 8, 5)
  spec = np.asarray(raw[0, :, 0]) + 1j * np.asarray(raw[0, :, 1])
  want = np.fft.irfft2(spec * param.spectrum_scale(8, 8), s=(8, 8)) / 4.0
  np.testing.assert_allclose(jax.jit(p.to_rgb)(raw)[0], want.transpose(1, 2, 0), atol=1e-5)
  assert param.FFT_OUTPUT_SCALE == 0.25
  odd = param.fft_image((7, 9))
  assert param.output_shape(odd) == (1, 7, 9, 3)
  np.testing.assert_allclose(param.rfft2d_freqs(7, 9)[1, 4], np.hypot(1 / 7, 4 / 9))


def test_color_matrix():
  m = param.COLOR_CORRELATION_SVD_SQRT
  np.testing.assert_allclose(m, [[0.26, 0.09, 0.02], [0.27, 0.0, -0.05],
                                 [0.27, -0.09, 0.03]])
  norms = np.linalg.norm(param.COLOR_CORRELATION_NORMALIZED, axis=0)
  np.testing.assert_allclose(norms.max(), 1.0, rtol=1e-6)
  np.testing.assert_allclose(param.COLOR_CORRELATION_NORMALIZED * param.MAX_NORM_SVD_SQRT, m, rtol=1e-6)
  t = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
  np.testing.assert_allclose(param.decorrelate_color(jnp.asarray(t)),
                             t @ param.COLOR_CORRELATION_NORMALIZED.T, rtol=1e-5)


@pytest.mark.parametrize("kind", ["fft", "pixel", "laplacian", "cppn"])
def test_image_kinds_in_range(kind):
  p = param.image(16, batch=2, kind=kind)
  raw = p.init(KEY)
  raw = jax.tree_util.tree_map(lambda x: x * 300.0 + 1.0, raw)   # extreme values
  img = jax.jit(p.to_rgb)(raw)
  assert img.shape == (2, 16, 16, 3)
  assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
  assert param.output_shape(p) == (2, 16, 16, 3)
  g = jax.jit(jax.grad(lambda r: p.to_rgb(r).mean()))(p.init(KEY))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(g))


def test_pixel_sd_and_defaults():
  raw = param.pixel_image(64, sd=0.01).init(KEY)
  assert abs(float(raw.std()) - 0.01) < 0.001
  p = param.image(32)
  start = jax.jit(lambda k: p.to_rgb(p.init(k)))(KEY)
  assert abs(float(start.mean()) - 0.5) < 0.05   # sigmoid of small values


def test_non_sigmoid_and_alpha():
  p = param.image(8, decorrelate=True, sigmoid=False)
  img = jax.jit(p.to_rgb)(jax.tree_util.tree_map(lambda x: x * 1e4, p.init(KEY)))
  assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
  a = param.image(8, alpha=True)
  out = jax.jit(a.to_rgb)(a.init(KEY))
  assert out.shape == (1, 8, 8, 4)
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_cppn_starts_grey():
  p = param.cppn(12, batch=2)
  img = jax.jit(lambda k: p.to_rgb(p.init(k)))(KEY)
  np.testing.assert_allclose(img, 0.5)


def test_lowres_and_shared_separate():
  low = param.lowres_tensor((3, 8, 8, 3), (1, 2, 2, 3))
  out = jax.jit(lambda k: low.to_rgb(low.init(k)))(KEY)
  assert out.shape == (3, 8, 8, 3)
  np.testing.assert_allclose(out[0], out[2])   # a batch of 1 is shared
  p = param.shared_separate(16, frames=5)
  img = jax.jit(lambda k: p.to_rgb(p.init(k)))(KEY)
  assert img.shape == (5, 16, 16, 3)
  assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
