"""Convolutions rewritten into XLA:CPU's canonical layout (atlasjax.xla_cpu)."""

import re

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax import xla_cpu
from atlasjax.optvis import objectives as obj
from atlasjax.optvis import render
import toy_model
import vit_toy

# dim_labels of every convolution in XLA's optimised HLO, e.g. "b01f_01io->b01f".
_DIM_LABELS = re.compile(r"convolution\(.*?dim_labels=([a-z0-9]+_[a-z0-9]+->[a-z0-9]+)")
CANONICAL_2D = "b01f_01io->b01f"


def _conv_labels(compiled) -> list[str]:
  return _DIM_LABELS.findall(compiled.as_text())


def _jaxpr_conv_eqns(fn, *args):
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "conv_general_dilated":
        found.append(eqn)
      for v in eqn.params.values():
        if isinstance(v, jax.extend.core.ClosedJaxpr):
          walk(v.jaxpr)
  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


def _jaxpr_convs(fn, *args):
  return [e.params["dimension_numbers"] for e in _jaxpr_conv_eqns(fn, *args)]


CASES = [
    # (lhs layout, rhs layout, out layout, strides, padding, lhs dil., rhs dil., groups)
    ("NCHW", "OIHW", "NCHW", (1, 1), "SAME", (1, 1), (1, 1), 1),
    ("NHWC", "HWIO", "NCHW", (2, 1), ((1, 2), (0, 1)), (1, 1), (2, 1), 1),
    ("NHWC", "OHWI", "NHWC", (1, 2), ((0, 0), (1, 0)), (2, 1), (1, 1), 2),
    ("NCHW", "HWOI", "NHWC", (2, 2), "SAME", (1, 1), (1, 2), 4),   # grouped / depthwise-like
]


@pytest.mark.parametrize("case", CASES)
def test_rewritten_convolution_equals_the_original_and_is_canonical(case):
  lhs_l, rhs_l, out_l, strides, padding, lhs_dil, rhs_dil, groups = case
  k = jax.random.split(jax.random.PRNGKey(0))
  c_in, c_out = 4, 8
  lhs_shape = {"N": 2, "H": 9, "W": 7, "C": c_in}
  rhs_shape = {"H": 3, "W": 2, "I": c_in // groups, "O": c_out}
  x = jax.random.normal(k[0], [lhs_shape[d] for d in lhs_l])
  w = jax.random.normal(k[1], [rhs_shape[d] for d in rhs_l])

  def f(x, w):
    return lax.conv_general_dilated(
        x, w, strides, padding, lhs_dilation=lhs_dil, rhs_dilation=rhs_dil,
        dimension_numbers=(lhs_l, rhs_l, out_l), feature_group_count=groups)

  g = xla_cpu.canonical_convolutions(f)
  np.testing.assert_allclose(g(x, w), f(x, w), rtol=1e-5, atol=1e-5)
  assert g(x, w).shape == f(x, w).shape
  assert not xla_cpu.is_canonical(_jaxpr_convs(f, x, w)[0])
  # Grouped convolutions are deliberately left as written (no fast kernel in
  # either layout; transposing them slowed EfficientNet's step 2.4x).
  assert all(xla_cpu.is_canonical(dn) == (groups == 1) for dn in _jaxpr_convs(g, x, w))


def test_input_gradient_inside_a_scan_is_canonical_and_unchanged():
  """The case XLA:CPU misses: a convolution's input gradient in a loop body."""
  model, params = toy_model.TOY_MODEL, toy_model.toy_params()
  x0 = jax.random.uniform(jax.random.PRNGKey(1), (3, 16, 16, 3))

  def step(x, _):
    g = jax.grad(lambda x: model.apply(params, x, layers=("conv2",))["conv2"].sum())(x)
    return x + 0.1 * g, None

  def run(body):
    return jax.jit(lambda x: lax.scan(body, x, jnp.arange(3))[0])

  plain, fixed = run(step), run(xla_cpu.canonical_convolutions(step))
  # JAX's transpose rule swaps the kernel's feature dims ("01oi"); without the
  # rewrite they reach XLA 0.10's while body as they are (not asserted: a
  # later XLA may canonicalise loop bodies itself).
  labels = _conv_labels(fixed.lower(x0).compile())
  assert labels and set(labels) == {CANONICAL_2D}
  np.testing.assert_allclose(fixed(x0), plain(x0), rtol=1e-5, atol=1e-6)


def test_rewrite_reaches_convolutions_inside_nested_jit():
  w = jnp.ones((3, 3, 2, 5))

  @jax.jit
  def inner(x):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                    dimension_numbers=("NCHW", "HWIO", "NHWC"))

  f = lambda x: inner(x) * 2.0
  x = jnp.arange(2 * 2 * 6 * 6, dtype=jnp.float32).reshape(2, 2, 6, 6)
  g = xla_cpu.canonical_convolutions(f)
  np.testing.assert_allclose(g(x), f(x), rtol=1e-6)
  assert all(xla_cpu.is_canonical(dn) for dn in _jaxpr_convs(g, x))


def test_pytrees_in_and_out():
  f = lambda a, b: {"s": a["x"] + b, "t": (a["y"] * 2, None)}
  g = xla_cpu.canonical_convolutions(f)
  out = g({"x": jnp.ones(2), "y": jnp.zeros(3)}, 1.0)
  assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(
      f({"x": jnp.ones(2), "y": jnp.zeros(3)}, 1.0))
  np.testing.assert_array_equal(out["s"], [2.0, 2.0])


def test_loop_body_only_rewrites_on_cpu():
  f = lambda x: x
  assert xla_cpu.loop_body(f, "gpu") is f
  assert xla_cpu.loop_body(f, "tpu") is f
  assert xla_cpu.loop_body(f, "cpu") is not f


def test_renderer_program_has_only_canonical_convolutions_on_cpu():
  """The whole render program (steps in lax.scan), as compiled by XLA:CPU."""
  model, params = toy_model.TOY_MODEL, toy_model.toy_params()
  cfg = render.RenderConfig(size=16, steps=2, param="pixel", transforms="none",
                            redirect_relu_steps=0, chunk_size=2)
  renderer = render.build(model, lambda c: obj.channel("conv2", c), cfg)
  ids = jnp.arange(2, dtype=jnp.int32)
  compiled = renderer.lower(params, jax.random.PRNGKey(0), ids, ids).compile()
  labels = _conv_labels(compiled)
  assert labels and set(labels) == {CANONICAL_2D}


POOLS = [
    # (window, strides, padding)
    ((1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (0, 1), (0, 1), (0, 0))),   # GoogLeNet's ceil-mode pool
    ((1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))),   # the inception pool branch
    ((1, 2, 2, 1), (1, 2, 2, 1), ((0, 0), (0, 0), (0, 0), (0, 0))),
    ((2, 1, 3, 2), (1, 1, 2, 1), ((1, 0), (0, 0), (2, 1), (0, 1))),   # odd windows, every axis
]


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("pool", POOLS)
def test_pool_gradient_equals_select_and_scatter_with_ties(pool, kind):
  window, strides, padding = pool
  op, init = (lax.max, -jnp.inf) if kind == "max" else (lax.min, jnp.inf)
  k = jax.random.split(jax.random.PRNGKey(4))
  # Small integers: many windows hold equal values, so tie-breaking is tested.
  x = jnp.round(3 * jax.random.uniform(k[0], (3, 9, 8, 4)))
  pooled = lambda x: lax.reduce_window(x, init, op, window, strides, padding)
  cot = jax.random.normal(k[1], pooled(x).shape)
  grad = lambda x: jax.vjp(pooled, x)[1](cot)[0]
  fast = xla_cpu.fast_pool_gradients(grad)
  prims = {e.primitive.name for e in jax.make_jaxpr(fast)(x).jaxpr.eqns}
  assert "select_and_scatter_add" in {e.primitive.name for e in jax.make_jaxpr(grad)(x).jaxpr.eqns}
  assert "select_and_scatter_add" not in prims
  np.testing.assert_allclose(jax.jit(fast)(x), jax.jit(grad)(x), rtol=1e-6, atol=1e-6)


def test_rewrite_keeps_googlenet_input_gradient_and_name_stack(googlenet):
  """Both rewrites on the real network: same gradient, metadata kept for profiles."""
  model, params = googlenet
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3))
  grad = jax.grad(lambda x: model.apply(params, x, layers=("mixed3b",))["mixed3b"]
                  [..., :8].mean())
  fast = jax.jit(xla_cpu.rewrite(grad))
  np.testing.assert_allclose(fast(x), jax.jit(grad)(x), rtol=1e-5,
                             atol=1e-5 * float(jnp.abs(jax.jit(grad)(x)).max()))
  hlo = fast.lower(x).compile().as_text()
  assert "select-and-scatter" not in hlo and " scatter(" not in hlo
  assert "transpose(jvp(InceptionV1))/mixed3a" in hlo



def test_renderer_with_and_without_the_cpu_rewrite_agree():
  model, params = toy_model.TOY_MODEL, toy_model.toy_params()
  cfg = render.RenderConfig(size=16, steps=4, param="pixel", transforms="none",
                            redirect_relu_steps=0, chunk_size=2)
  make = lambda c: obj.channel("conv2", c)
  key = jax.random.PRNGKey(2)
  on = render.render(model, params, make, args=jnp.arange(2), config=cfg, key=key)
  off = render.render(model, params, make, args=jnp.arange(2), key=key,
                      config=cfg.__class__(**{**cfg.__dict__, "cpu_rewrite": False}))
  np.testing.assert_allclose(on.images, off.images, atol=1e-5)
  np.testing.assert_allclose(on.losses, off.losses, rtol=1e-5, atol=1e-6)


def test_patchify_input_gradient_is_left_as_written():
  """A ViT's only gradient convolution (the patch embedding's) stays as JAX wrote it.

  In XLA:CPU's canonical layout it ran slower (ViT-Ti's gradient in a scan
  9-17 %, bench/RESULTS.md), unlike GoogLeNet's convolutions. Traced with
  abstract weights (nothing compiled) on the toy ViT.
  """
  module = vit_toy.LinenViT()
  x = jax.ShapeDtypeStruct((2, vit_toy.SIZE, vit_toy.SIZE, 3), jnp.float32)
  variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
  grad = jax.grad(lambda x, v: module.apply(v, x)[:, 3].sum())
  before = _jaxpr_conv_eqns(grad, x, variables)
  after = _jaxpr_conv_eqns(xla_cpu.rewrite(grad), x, variables)
  transposes = [e for e in before if xla_cpu.is_patchify_transpose(e)]
  assert len(transposes) == 1 and not xla_cpu.is_canonical(
      transposes[0].params["dimension_numbers"])
  assert transposes[0].params["lhs_dilation"] == (vit_toy.PATCH, vit_toy.PATCH)
  assert ([e.params["dimension_numbers"] for e in after]
          == [e.params["dimension_numbers"] for e in before])


@pytest.mark.parametrize("stride", [4, 2])
def test_only_the_transpose_of_a_patchify_convolution_is_exempt(stride):
  """Kernel 4: stride 4 is a patchify (left as written), stride 2 overlaps (rewritten)."""
  k = jax.random.split(jax.random.PRNGKey(5))
  x = jax.random.normal(k[0], (2, 12, 8, 3))
  w = jax.random.normal(k[1], (4, 4, 3, 5))
  conv = lambda x: lax.conv_general_dilated(x, w, (stride, stride), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
  grad = jax.grad(lambda x: jnp.sin(conv(x)).sum())
  (transpose,) = _jaxpr_conv_eqns(grad, x)[1:]    # [forward, input gradient]
  assert xla_cpu.is_patchify_transpose(transpose) == (stride == 4)
  (rewritten,) = _jaxpr_convs(xla_cpu.rewrite(grad), x)[1:]
  assert xla_cpu.is_canonical(rewritten) == (stride != 4)
  np.testing.assert_allclose(jax.jit(xla_cpu.rewrite(grad))(x), jax.jit(grad)(x),
                             rtol=1e-5, atol=1e-5)


def test_googlenet_gradient_convolutions_are_all_still_rewritten(googlenet):
  """The patchify exception changes nothing for GoogLeNet: every convolution of
  its input gradient (the stride-2 7x7 stem's ``lhs_dilation=2`` one included)
  is non-canonical as JAX writes it and canonical after the rewrite."""
  model, params = googlenet
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  grad = jax.grad(lambda x: model.apply(params, x, layers=("mixed3b",))["mixed3b"].mean())
  before, after = _jaxpr_conv_eqns(grad, x), _jaxpr_conv_eqns(xla_cpu.rewrite(grad), x)
  assert not any(xla_cpu.is_patchify_transpose(e) for e in before)
  assert any(e.params["lhs_dilation"] == (2, 2) for e in before)
  assert sum(not xla_cpu.is_canonical(e.params["dimension_numbers"]) for e in before) > 0
  assert len(after) == len(before)
  assert all(xla_cpu.is_canonical(e.params["dimension_numbers"]) for e in after)
