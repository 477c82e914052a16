"""Transforms: static shapes under jit, determinism, exact cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax.optvis import transform as tr

KEY = jax.random.PRNGKey(1)
IMG = jnp.asarray(np.random.default_rng(0).uniform(size=(20, 20, 3)), jnp.float32)


def test_pad_and_jitter():
  p = tr.pad(3)(KEY, IMG)
  assert p.shape == (26, 26, 3)
  np.testing.assert_allclose(p[0, 0], 0.5)
  r = tr.pad(2, "reflect")(KEY, IMG)
  np.testing.assert_allclose(r[0, 2], IMG[2, 0])
  u = tr.pad(2, value="uniform")(KEY, IMG)
  assert u.shape == (24, 24, 3) and 0 <= float(u[0, 0, 0]) <= 1
  j = tr.jitter(4)
  out = [j(jax.random.PRNGKey(i), IMG) for i in range(6)]
  assert all(o.shape == (16, 16, 3) for o in out)
  assert len({float(o[0, 0, 0]) for o in out}) > 1
  with pytest.raises(ValueError):
    tr.pad(1, "edge")


def test_identity_resampling_and_exact_rotation():
  np.testing.assert_allclose(tr.random_scale([1.0])(KEY, IMG), IMG, atol=1e-6)
  np.testing.assert_allclose(tr.random_rotate([0])(KEY, IMG), IMG, atol=1e-6)
  rot = tr.random_rotate([90])(KEY, IMG)
  np.testing.assert_allclose(rot, np.rot90(np.asarray(IMG), k=1), atol=1e-5)
  zoom = tr.random_scale([2.0])(KEY, IMG)
  # Centre pixel of a 2× zoom is the average of the 4 central input pixels.
  np.testing.assert_allclose(zoom[9:11, 9:11].mean((0, 1)), IMG[9:11, 9:11].mean((0, 1)), atol=0.05)


def test_crop_or_pad_to():
  assert tr.crop_or_pad_to(10)(KEY, IMG).shape == (10, 10, 3)
  np.testing.assert_allclose(tr.crop_or_pad_to(10)(KEY, IMG), IMG[5:15, 5:15])
  big = tr.crop_or_pad_to(25, 22)(KEY, IMG)
  assert big.shape == (25, 22, 3)
  np.testing.assert_allclose(big[2:22, 1:21], IMG)


@pytest.mark.parametrize("name", tr.PRESETS)
def test_presets_static_shapes_under_jit(name):
  size = 64
  t = tr.at_progress(tr.preset(name, size), 0.5)   # MaCo's crops follow a schedule
  img = jnp.full((size, size, 3), 0.3)
  f = jax.jit(t)
  shapes = {f(jax.random.PRNGKey(i), img).shape for i in range(3)}
  assert len(shapes) == 1
  expected = {"standard": 64 + 24 - 12, "distill2017": 64, "atlas": 40,
              "atlas_notebook": 64 + 4 - 34, "maco": 64, "none": 64}[name]
  views = (tr.MACO_CROPS,) if name == "maco" else ()   # several views per image
  assert shapes.pop() == views + (expected, expected, 3)
  batch = jax.jit(jax.vmap(t))(jax.random.split(KEY, 4), jnp.stack([img] * 4))
  assert batch.shape[0] == 4


def test_one_resampling_equals_the_chain_it_replaces():
  # Pad, zoom 2× and rotate 90° as one matrix == padding, then two resamplings.
  fused = tr.random_affine(pad=3, scales=[2.0], angles=[90])(KEY, IMG)
  chain = tr.random_rotate([90])(KEY, tr.random_scale([2.0])(KEY, tr.pad(3)(KEY, IMG)))
  np.testing.assert_allclose(fused, chain, atol=1e-5)
  # Pad only: exactly the constant pad (the fill stands for the padding).
  np.testing.assert_array_equal(tr.random_affine(pad=3)(KEY, IMG), tr.pad(3)(KEY, IMG))
  # Jitters: every draw is one of the integer crops of the padded image.
  padded = np.asarray(tr.pad(2)(KEY, IMG))
  crops = {(dy, dx): padded[dy:dy + 20, dx:dx + 20] for dy in range(5) for dx in range(5)}
  seen = set()
  for i in range(12):
    out = np.asarray(tr.random_affine(pad=2, jitter_before=(2, 2))(jax.random.PRNGKey(i), IMG))
    match = [k for k, c in crops.items() if np.allclose(out, c, atol=1e-6)]
    assert len(match) == 1, i
    seen.add(match[0])
  assert len(seen) > 3


def test_full_frame_view_and_noise_fill():
  # cover=True at scale 1 maps the whole image onto the output: a 2× view of a
  # 20 px image is the mean of each 2 × 2 block.
  half = tr.random_affine(out_size=10, cover=True, fill="noise")(KEY, IMG)
  blocks = np.asarray(IMG).reshape(10, 2, 10, 2, 3).mean((1, 3))
  np.testing.assert_allclose(half, blocks, atol=1e-5)
  # Zooming out shows noise (in [0, 1], different per key) around the image.
  out = [tr.random_affine(out_size=20, cover=True, scales=[0.5], fill="noise")(
      jax.random.PRNGKey(i), jnp.zeros((20, 20, 3))) for i in range(2)]
  corner = np.asarray(out[0][:3, :3])
  assert corner.min() >= 0 and corner.max() <= 1 and corner.std() > 0.1
  assert not np.allclose(out[0][:3, :3], out[1][:3, :3])
  np.testing.assert_allclose(out[0][7:13, 7:13], 0.0, atol=1e-6)
  with pytest.raises(ValueError, match="fill"):
    tr.random_affine(fill="edge")


def _border_over_centre_gradient(transform, size=80, keys=48):
  """Mean |d output / d pixel| of the outer tenth over that of the centre."""
  img = jnp.full((size, size, 3), 0.5)
  grads = jax.jit(jax.vmap(jax.grad(lambda k, x: transform(k, x).sum(), argnums=1),
                           in_axes=(0, None)))(jax.random.split(KEY, keys), img)
  g = np.abs(np.asarray(grads)).mean((0, 3))
  ring = np.ones_like(g, bool)
  t = size // 10
  ring[t:-t, t:-t] = False
  centre = g[size // 4:-size // 4, size // 4:-size // 4]
  return g[ring].mean() / centre.mean()


def test_full_frame_atlas_icons_get_gradient_at_the_border():
  # The notebook's crops almost never reach the outer tenth of the icon; the
  # full-frame view reaches it about as often as the centre.
  assert _border_over_centre_gradient(tr.preset("atlas", 80)) > 0.7
  assert _border_over_centre_gradient(tr.preset("atlas_notebook", 80)) < 0.3


def test_deterministic_given_key_and_differentiable():
  t = jax.jit(tr.compose(*tr.standard()))
  a, b = t(KEY, IMG), t(KEY, IMG)
  np.testing.assert_array_equal(a, b)
  c = t(jax.random.PRNGKey(2), IMG)
  assert not np.allclose(a, c)
  g = jax.grad(lambda x: t(KEY, x).sum())(IMG)
  assert float(jnp.abs(g).sum()) > 0


def test_collapse_alpha():
  rgba = jnp.concatenate([IMG, jnp.ones((20, 20, 1))], -1)
  np.testing.assert_allclose(tr.collapse_alpha_random()(KEY, rgba), IMG)
  alpha_t = tr.preset("standard", 20, alpha=True)
  assert alpha_t(KEY, rgba).shape[-1] == 3
