"""InceptionV1 as a Flax module: the variables tree, equality with the
pre-Flax implementation on the sample photos, orbax round trip."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

import hlo_digest
import legacy_inception_v1
from atlasjax import data as data_lib
from atlasjax import images as images_lib
from atlasjax.models import inception_v1, weights


def test_variables_are_a_flax_tree_with_lucid_scopes(googlenet):
  _, variables = googlenet
  assert set(variables) == {"params"}
  p = variables["params"]
  assert p["conv2d0"]["kernel"].shape == (7, 7, 3, 64)
  assert set(p["mixed4c"]) == {"1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck",
                               "5x5", "pool_reduce"}
  assert p["mixed4c"]["3x3_bottleneck"]["kernel"].shape == (1, 1, 512, 128)
  assert p["logits"]["kernel"].shape == (1024, 1000)
  # The module's own init makes the same tree (names and shapes).
  fresh = jax.eval_shape(lambda: inception_v1.init(jax.random.PRNGKey(0), size=64))
  shapes = lambda t: jax.tree_util.tree_map(lambda a: a.shape, t)
  assert shapes(fresh) == shapes(variables)


def test_logits_equal_the_pre_flax_implementation(googlenet, sample_dir):
  """≤ 1e-6 relative on real photos (it is in fact the same XLA program)."""
  model, variables = googlenet
  raw = weights.load_raw(data_lib.googlenet_dir())
  legacy = legacy_inception_v1.build(legacy_inception_v1.BVLC_GOOGLENET)
  paths = images_lib.list_images(sample_dir)[:8]
  x = jnp.stack([images_lib.load_eval(p) for p in paths])
  ours = jax.jit(lambda v, x: model.apply(v, x, layers=("logits", "mixed4c")))(variables, x)
  ref = jax.jit(lambda r, x: legacy.apply(r, x, layers=("logits", "mixed4c")))(raw, x)
  for name in ("logits", "mixed4c"):
    a, b = np.asarray(ours[name]), np.asarray(ref[name])
    assert np.abs(a - b).max() <= 1e-6 * np.abs(b).max(), name


def test_module_apply_is_the_pure_function(googlenet):
  model, variables = googlenet
  x = jax.random.uniform(jax.random.PRNGKey(3), (1, 64, 64, 3))
  direct = inception_v1.InceptionV1().apply(variables, x, layers=("mixed3a",))
  np.testing.assert_array_equal(direct["mixed3a"],
                                model.apply(variables, x, layers=("mixed3a",))["mixed3a"])


def test_orbax_round_trip(googlenet, tmp_path):
  model, variables = googlenet
  path = tmp_path / "ckpt"
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(path, variables)
  with ocp.StandardCheckpointer() as ckpt:
    restored = ckpt.restore(path, jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, variables))
  x = jax.random.uniform(jax.random.PRNGKey(4), (1, 64, 64, 3))
  np.testing.assert_array_equal(
      model.apply(restored, x, layers=("mixed3b",))["mixed3b"],
      model.apply(variables, x, layers=("mixed3b",))["mixed3b"])


def test_same_compiled_program_as_the_pre_flax_port(googlenet):
  """The port cannot be slower: XLA compiles both to the same instructions."""
  model, variables = googlenet
  raw = jax.tree_util.tree_map(jnp.asarray, weights.load_raw(data_lib.googlenet_dir()))
  legacy = legacy_inception_v1.build(legacy_inception_v1.BVLC_GOOGLENET)
  x = jnp.zeros((2, 64, 64, 3))

  def digest(apply, params):
    loss = lambda x, p: apply(p, x, layers=("mixed3b",))["mixed3b"][..., 7].mean()
    return hlo_digest.program_digest(jax.jit(jax.grad(loss)).lower(x, params).compile())

  assert digest(model.apply, variables) == digest(legacy.apply, raw)
