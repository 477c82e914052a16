"""Reference photos pass through the render's own per-step transform."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from atlasjax.optvis import objectives as O
from atlasjax.optvis import param as param_lib
from atlasjax.optvis import render

PHOTO = np.random.default_rng(0).uniform(size=(24, 24, 3)).astype(np.float32)


def _photo_param(photo) -> param_lib.ImageParam:
  """Raw parameters that ARE the photo: the image equals the reference."""
  return param_lib.ImageParam(init=lambda key: jnp.asarray(photo)[None],
                              to_rgb=lambda raw: raw)


def test_photo_and_image_see_the_same_transform_each_step(toy):
  """Image == photo, random transforms: their activations differ by exactly
  0 at every step iff the photo gets the image's transform (same key)."""
  model, params = toy
  cfg = render.RenderConfig(size=24, steps=4, lr=0.0, transforms="standard",
                            redirect_relu_steps=0)
  result = render.render(model, params, lambda ph: O.match("conv1", ph),
                         PHOTO[None], cfg, param=_photo_param(PHOTO))
  np.testing.assert_array_equal(np.asarray(result.losses), 0.0)
  # A different photo, same setting: the match term is no longer 0.
  other = render.render(model, params, lambda ph: O.match("conv1", ph),
                        PHOTO[None, ::-1], cfg, param=_photo_param(PHOTO))
  assert np.all(np.asarray(other.losses) > 0)


def test_caricature_rises_and_batched_equals_single(toy):
  model, params = toy
  photos = np.random.default_rng(1).uniform(size=(2, 40, 40, 3)).astype(np.float32)
  make = lambda ph: O.caricature("conv2", ph) + 0.5 * O.style("conv1", ph, slot="s")
  cfg = render.RenderConfig(size=24, steps=8, chunk_size=2, redirect_relu_steps=0)
  batch = render.render(model, params, make, photos, cfg)
  losses = np.asarray(batch.losses)
  assert np.all(losses[:, -1] < losses[:, 0])
  one = render.render(model, params, make, photos[1:], cfg, item_ids=[1])
  np.testing.assert_array_equal(one.images[0], batch.images[1])


def test_reference_objectives_match_numpy(toy):
  """caricature, style and match on given activations vs NumPy formulas."""
  rng = np.random.default_rng(2)
  a, r = rng.normal(size=(2, 1, 3, 3, 4)).astype(np.float32)
  acts = {"l": jnp.asarray(a), O.ref("l"): jnp.asarray(r)}
  dot = (a * r).sum(-1)
  cos = dot / (1e-4 + np.linalg.norm(a, axis=-1)) / (1e-4 + np.linalg.norm(r, axis=-1))
  np.testing.assert_allclose(O.caricature("l", PHOTO, cossim_pow=2.0)(acts),
                             np.mean(dot * np.maximum(0.1, cos) ** 2), rtol=1e-5)
  g = lambda x: np.einsum("nc,nd->cd", x.reshape(-1, 4), x.reshape(-1, 4)) / 9
  np.testing.assert_allclose(O.style("l", PHOTO)(acts), -np.mean((g(a) - g(r)) ** 2),
                             rtol=1e-5)
  np.testing.assert_allclose(O.match("l", PHOTO)(acts), -np.mean((a - r) ** 2), rtol=1e-6)
  grad = jax.grad(lambda rr: O.match("l", PHOTO)({"l": acts["l"], O.ref("l"): rr}))(acts[O.ref("l")])
  np.testing.assert_array_equal(grad, 0.0)   # the photo is a fixed target


def test_two_photos_in_one_slot_is_an_error():
  try:
    O.match("conv1", PHOTO) + O.match("conv2", PHOTO[::-1])
  except O.ObjectiveError as e:
    assert "slot" in str(e)
  else:
    raise AssertionError("two photos shared a slot silently")
