"""Objectives against plain-NumPy references, composition and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax.optvis import objectives as obj

RNG = np.random.default_rng(0)
ACT = RNG.normal(size=(1, 5, 6, 8)).astype(np.float32)
BATCH = RNG.normal(size=(4, 5, 6, 8)).astype(np.float32)
LOGITS = RNG.normal(size=(1, 10)).astype(np.float32)
IMG = RNG.uniform(size=(2, 7, 9, 3)).astype(np.float32)
VEC = RNG.normal(size=(8,)).astype(np.float32)


def acts(a=ACT):
  return {"l": jnp.asarray(a), "logits": jnp.asarray(LOGITS), "input": jnp.asarray(IMG)}


def close(x, y, tol=1e-5):
  np.testing.assert_allclose(np.asarray(x), y, rtol=tol, atol=tol)


def test_channel_neuron_deepdream():
  close(obj.channel("l", 3)(acts()), ACT[..., 3].mean())
  close(obj.neuron("l", 2)(acts()), ACT[0, 2, 3, 2])            # centre (H//2, W//2)
  close(obj.neuron("l", 2, position=(1, 4))(acts()), ACT[0, 1, 4, 2])
  close(obj.deepdream("l")(acts()), (ACT ** 2).mean())
  assert obj.channel("l", 3).layers == ("l",)


def _np_dot_cossim(x, y, p):
  dot = (x * y).sum(-1)
  cos = dot / (1e-4 + np.sqrt((x * x).sum(-1))) / (1e-4 + np.sqrt((y * y).sum(-1)))
  return (dot * np.maximum(0.1, cos) ** p).mean()


def test_directions():
  close(obj.direction("l", VEC)(acts()), (ACT * VEC).sum(-1).mean())
  close(obj.direction("l", VEC, cossim_pow=2)(acts()), _np_dot_cossim(ACT, VEC, 2))
  a = ACT[:, 2, 3]
  close(obj.direction_neuron("l", VEC)(acts()), (a * VEC).sum(-1).mean())
  cos = (ACT * VEC).sum(-1) / (1e-4 + np.linalg.norm(ACT, axis=-1) * np.linalg.norm(VEC))
  close(obj.direction_cossim("l", VEC)(acts()), cos.mean())


def test_direction_neuron_cossim_lucid_form():
  got = obj.direction_neuron_cossim("l", VEC, cossim_pow=4.0)(acts())
  close(got, _np_dot_cossim(ACT[:, 2, 3], VEC, 4.0), 1e-4)


def test_direction_neuron_cossim_lucid_notebook_form():
  s = RNG.normal(size=(8, 8)).astype(np.float32)
  a = ACT[0, 2, 3]
  w = VEC @ s
  dot = (a * w).mean()                                   # mean over channels
  cos = max(0.1, dot / (1e-4 + np.linalg.norm(a)))       # no division by |w|
  got = obj.direction_neuron_cossim("l", VEC, cossim_pow=4.0, whitening=s,
                                    form="lucid_notebook")
  close(got(acts()), dot * cos ** 4, 1e-4)
  identity = obj.direction_neuron_cossim("l", VEC, cossim_pow=1.0, form="lucid_notebook")
  close(identity(acts()), (a * VEC).mean() * max(0.1, (a * VEC).mean() / (1e-4 + np.linalg.norm(a))), 1e-4)
  alias = obj.direction_neuron_cossim("l", VEC, cossim_pow=4.0, whitening=s, form="atlas")
  close(alias(acts()), dot * cos ** 4, 1e-4)
  with pytest.raises(ValueError, match="whitening"):
    obj.direction_neuron_cossim("l", VEC, whitening=s, form="lucid")
  with pytest.raises(ValueError, match="form must be one of"):
    obj.direction_neuron_cossim("l", VEC, form="cos")


def _np_cosine_form(a, w, p):
  cos = a @ w / (np.linalg.norm(a) * np.linalg.norm(w))
  return np.linalg.norm(a) * cos * max(0.1, cos) ** p


def test_direction_neuron_cossim_cosine_form_is_the_default_with_whitening():
  s = RNG.normal(size=(8, 8)).astype(np.float32)
  a = ACT[0, 2, 3].astype(np.float64)
  got = obj.direction_neuron_cossim("l", VEC, cossim_pow=4.0, whitening=s)
  close(got(acts()), _np_cosine_form(a, VEC @ s, 4.0), 1e-4)
  plain = obj.direction_neuron_cossim("l", VEC, cossim_pow=2.0, form="cosine")
  close(plain(acts()), _np_cosine_form(a, VEC.astype(np.float64), 2.0), 1e-4)


def test_cosine_form_is_invariant_to_scaling_direction_and_whitening():
  # A whitening-like SPD matrix: the inverse of an activation Gram matrix.
  x = RNG.normal(size=(64, 8))
  s = np.linalg.inv(x.T @ x / 64).astype(np.float32)
  value = lambda v, m: float(obj.direction_neuron_cossim(
      "l", v, cossim_pow=4.0, whitening=m)(acts()))
  ref = value(VEC, s)
  for k in (1e-3, 0.5, 7.0, 1e4):
    close(value(VEC * k, s), ref, 1e-4)          # direction scaled
    close(value(VEC, s * k), ref, 1e-4)          # whitening scaled (ridge, N)
  # The notebook's form is not: its "cosine" is cos·|w|/C.
  old = lambda v, m: float(obj.direction_neuron_cossim(
      "l", v, cossim_pow=4.0, whitening=m, form="lucid_notebook")(acts()))
  assert abs(old(VEC * 7.0, s) - old(VEC, s)) > 1e-3 * abs(old(VEC, s))


def test_cosine_form_does_not_depend_on_the_channel_count():
  # Padding activations and direction with silent channels changes C but not
  # the geometry: the true cosine's value (and its floor and power) stay put.
  a = np.zeros((1, 5, 6, 32), np.float32)
  a[..., :8] = ACT
  v = np.zeros(32, np.float32)
  v[:8] = VEC
  wide = {"l": jnp.asarray(a)}
  new = lambda x, d: float(obj.direction_neuron_cossim(
      "l", d, cossim_pow=4.0, form="cosine")(x))
  close(new(wide, v), new(acts(), VEC), 1e-5)
  old = lambda x, d: float(obj.direction_neuron_cossim(
      "l", d, cossim_pow=4.0, form="lucid_notebook")(x))
  assert abs(old(wide, v) - old(acts(), VEC)) > 1e-3 * abs(old(acts(), VEC))


def test_cosine_form_floor_applies_to_the_true_cosine():
  # An activation at 95° from the direction: cos < 0 is floored at 0.1, so the
  # value is |a|·cos·0.1**p (negative, small), whatever |v|.
  a = np.zeros((1, 3, 3, 2), np.float32)
  a[0, 1, 1] = [np.cos(np.radians(95)), np.sin(np.radians(95))]
  for scale in (1.0, 1e3):
    got = obj.direction_neuron_cossim("l", np.array([scale, 0.0], np.float32),
                                      cossim_pow=4.0, form="cosine")
    close(got({"l": jnp.asarray(a)}), np.cos(np.radians(95)) * 0.1 ** 4, 1e-6)


def test_classes():
  close(obj.class_logit(4)(acts()), LOGITS[0, 4])
  p = np.exp(LOGITS[0]) / np.exp(LOGITS[0]).sum()
  close(obj.class_probability(4)(acts()), p[4])
  assert obj.class_logit(4).layers == ("logits",)


def test_penalties():
  close(obj.l1()(acts()), np.abs(IMG).sum(), 1e-4)
  close(obj.l1(constant=0.5)(acts()), np.abs(IMG - 0.5).sum(), 1e-4)
  close(obj.l2()(acts()), np.sqrt(1e-6 + (IMG ** 2).sum()), 1e-4)
  tv = np.abs(np.diff(IMG, axis=1)).sum() + np.abs(np.diff(IMG, axis=2)).sum()
  close(obj.total_variation()(acts()), tv, 1e-4)
  assert obj.l1().layers == ()


def test_blur_matches_reference():
  k = obj.BLUR_KERNEL
  x = IMG[0, :, :, 0]
  pad = np.pad(x, 1)
  ones = np.pad(np.ones_like(x), 1)
  ref = np.zeros_like(x)
  for i in range(x.shape[0]):
    for j in range(x.shape[1]):
      ref[i, j] = (pad[i:i + 3, j:j + 3] * k).sum() / (ones[i:i + 3, j:j + 3] * k).sum()
  close(obj.blur(jnp.asarray(IMG))[0, :, :, 0], ref)
  want = 0.5 * ((IMG - np.asarray(obj.blur(jnp.asarray(IMG)))) ** 2).sum()
  close(obj.blur_input_each_step()(acts()), want, 1e-4)
  g = jax.grad(lambda x: obj.blur_input_each_step()({"input": x}))(jnp.asarray(IMG))
  close(g, IMG - np.asarray(obj.blur(jnp.asarray(IMG))), 1e-4)  # blur is stop-gradient


def test_batch_terms():
  b = BATCH
  w = np.linspace(0, 1, 4)
  want = ((1 - w) * b[..., 1].mean((1, 2)) + w * b[..., 5].mean((1, 2))).sum()
  close(obj.channel_interpolate("l", 1, "l", 5)(acts(b)), want, 1e-4)
  acc = 0.0
  for d in range(1, 5):
    for i in range(4 - d):
      acc += ((b[i] - b[i + d]) ** 2).mean() / 2.0 ** d
  close(obj.alignment("l")(acts(b)), -acc, 1e-4)
  flat = b.reshape(4, -1, 8)
  grams = np.einsum("bnc,bnd->bcd", flat, flat)
  grams /= np.linalg.norm(grams.reshape(4, -1), axis=1)[:, None, None]
  sims = sum((grams[i] * grams[j]).sum() for i in range(4) for j in range(4) if i != j)
  close(obj.diversity("l")(acts(b)), -sims / 4, 1e-4)
  same = np.repeat(b[:1], 4, axis=0)
  close(obj.diversity("l")(acts(same)), -3.0, 1e-4)  # identical images: cos = 1


def test_composition():
  a, b = obj.channel("l", 1), obj.deepdream("m")
  x = {"l": jnp.asarray(ACT), "m": jnp.asarray(BATCH)}
  va, vb = float(a(x)), float(b(x))
  close((a + b)(x), va + vb)
  close((a - 2 * b)(x), va - 2 * vb)
  close((-a + 1.0)(x), 1.0 - va)
  close((a * 3)(x), 3 * va)
  close((a / 2)(x), va / 2)
  close((a * b)(x), va * vb)
  assert set((a - b).layers) == {"l", "m"}
  assert sum([a, b]).layers == ("l", "m")


def test_sum_of_many_does_not_recurse():
  terms = [obj.channel("l", i % 8) for i in range(1500)]
  total = obj.sum_objectives(terms)
  close(total(acts()), sum(ACT[..., i % 8].mean() for i in range(1500)), 1e-2)
  chained = sum(terms[:1200])           # Python's sum: still flat
  close(chained(acts()), sum(ACT[..., i % 8].mean() for i in range(1200)), 1e-2)
  assert total.layers == ("l",)


def test_vmap_over_arguments():
  x = acts()
  f = lambda c: obj.channel("l", c)(x)
  close(jax.vmap(f)(jnp.arange(8)), ACT.mean((0, 1, 2)))
  g = lambda v: obj.direction_neuron_cossim("l", v, cossim_pow=4.0)(x)
  vecs = RNG.normal(size=(3, 8)).astype(np.float32)
  close(jax.vmap(g)(jnp.asarray(vecs)),
        [_np_dot_cossim(ACT[:, 2, 3], v, 4.0) for v in vecs], 1e-4)
  h = lambda pos: obj.neuron("l", 0, position=pos)(x)
  close(jax.vmap(h)(jnp.array([[0, 0], [4, 5]])), [ACT[0, 0, 0, 0], ACT[0, 4, 5, 0]])
