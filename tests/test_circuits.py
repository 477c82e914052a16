"""Expanded weights against weights composed directly from the parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toy_model

from atlasjax import circuits
from atlasjax.models import base

# GoogLeNet branch names (Lucid) and their BVLC (Caffe) parameter names.
_BVLC_BRANCH = {"1x1": "1x1", "3x3_bottleneck": "3x3_reduce", "3x3": "3x3",
                "5x5_bottleneck": "5x5_reduce", "5x5": "5x5",
                "pool_reduce": "pool_proj"}


def branch_kernel(params, block: str, branch: str) -> np.ndarray:
  """HWIO kernel of a GoogLeNet branch, in either params layout.

  Flax layout: ``params["params"]["mixed3b"]["3x3_bottleneck"]``; the older
  BVLC layout: ``params["inception_3b"]["3x3_reduce"]``.
  """
  if "params" in params:
    node = params["params"][block][branch]
  else:
    node = params["inception_" + block.removeprefix("mixed")][_BVLC_BRANCH[branch]]
  return np.asarray(node["kernel"], np.float64)


def compose(k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
  """Kernel of conv(k2) ∘ conv(k1), stride 1: ``[h1+h2-1, w1+w2-1, a, c]``."""
  h1, w1, a, _ = k1.shape
  h2, w2, _, c = k2.shape
  out = np.zeros((h1 + h2 - 1, w1 + w2 - 1, a, c))
  for dy in range(h1):
    for dx in range(w1):
      for ey in range(h2):
        for ex in range(w2):
          out[dy + ey, dx + ex] += k1[dy, dx] @ k2[ey, ex]
  return out


def as_expanded(kernel: np.ndarray) -> np.ndarray:
  """HWIO ``[kh, kw, C_a, C_b]`` -> expanded-weights order ``[C_b, kh, kw, C_a]``."""
  return np.transpose(kernel, (3, 0, 1, 2))


def box(channels: int, side: int = 3) -> np.ndarray:
  """Depthwise average over a ``side × side`` window as an HWIO kernel."""
  return np.broadcast_to(np.eye(channels) / side ** 2,
                         (side, side, channels, channels)).copy()


# ---------------------------------------------------------------------------
# GoogLeNet: adjacent 1×1, through the bottleneck, through the pool branch.

def test_adjacent_1x1_equals_conv_weights(googlenet):
  model, params = googlenet
  w = circuits.expanded_weights(model, params, "mixed3a", "mixed3b_1x1_pre_relu")
  want = as_expanded(branch_kernel(params, "mixed3b", "1x1"))
  assert w.shape == (128, 1, 1, 256)
  np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-6)


def test_bottleneck_3x3_equals_composed_kernel(googlenet):
  model, params = googlenet
  w = circuits.expanded_weights(model, params, "mixed3a", "mixed3b_3x3_pre_relu",
                                channels_b=range(0, 192, 7))
  want = compose(branch_kernel(params, "mixed3b", "3x3_bottleneck"),
                 branch_kernel(params, "mixed3b", "3x3"))
  assert w.shape == (28, 3, 3, 256)
  np.testing.assert_allclose(w, as_expanded(want)[::7], rtol=1e-4, atol=1e-6)


def test_max_pool_branch_is_averaged(googlenet):
  """The pool branch's 3×3 max pool becomes a 3×3 average before the 1×1."""
  model, params = googlenet
  w = circuits.expanded_weights(model, params, "mixed3a",
                                "mixed3b_pool_reduce_pre_relu")
  want = compose(box(256), branch_kernel(params, "mixed3b", "pool_reduce"))
  np.testing.assert_allclose(w, as_expanded(want), rtol=1e-4, atol=1e-7)


def test_whole_block_contains_its_branches(googlenet):
  """mixed3a -> mixed3b: one 5×5 field; the 1×1 channels sit at its centre."""
  model, params = googlenet
  w = circuits.expanded_weights(model, params, "mixed3a", "mixed3b",
                                channels_b=[0, 127])
  assert w.shape == (2, 5, 5, 256)
  k1 = as_expanded(branch_kernel(params, "mixed3b", "1x1"))[[0, 127], 0, 0]
  np.testing.assert_allclose(w[:, 2, 2], k1, rtol=1e-5, atol=1e-6)
  ring = w.copy()
  ring[:, 2, 2] = 0
  assert np.abs(ring).max() == 0.0      # 1×1 units see only the centre


def test_unit_layers_and_neighbours(googlenet):
  model, _ = googlenet
  assert circuits.previous_layer(model, "mixed3b") == "mixed3a"
  assert circuits.previous_layer(model, "mixed4a") == "mixed3b"   # via maxpool4
  assert circuits.next_layer(model, "mixed3a") == "mixed3b"
  assert circuits.previous_layer(model, "conv2d0") is None


def test_clear_errors(googlenet):
  model, params = googlenet
  with pytest.raises(circuits.CircuitError, match="not before"):
    circuits.expanded_weights(model, params, "mixed3b", "mixed3a")
  with pytest.raises(circuits.CircuitError, match="perturb"):
    circuits.expanded_weights(model, params, "mixed3b_3x3_bottleneck",
                              "mixed3b_3x3_pre_relu")
  with pytest.raises(circuits.CircuitError, match="LAYER:CHANNEL"):
    circuits.parse_unit("mixed4b")


# ---------------------------------------------------------------------------
# Small models: two stacked convolutions with a ReLU (and a max pool) between.

def _conv(x, kernel, bias, stride=1):
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias


def _stack_model(pool: bool) -> base.Model:
  names = ("conv1", "conv2", "conv3")

  def apply(params, images, layers=None, perturb=None):
    perturb = perturb or {}
    acts, x = {}, images
    for name in names:
      x = _conv(x, params[name]["kernel"], params[name]["bias"])
      acts[name + "_pre_relu"] = x
      acts[name] = x = jax.nn.relu(x) + perturb.get(name, 0.0)
      if pool and name == "conv2":
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1),
                                  (1, 1, 1, 1), "SAME")
    return acts if layers is None else {k: acts[k] for k in layers}

  depths = {"conv1": 4, "conv2": 5, "conv3": 6}
  layers = tuple(base.Layer(n + suffix, depths[n], 1)
                 for n in names for suffix in ("_pre_relu", ""))
  return base.Model(name=f"stack_pool{pool}", apply=apply, layers=layers,
                    input_size=16, min_size=8,
                    relu_twins=tuple((n, n + "_pre_relu") for n in names),
                    perturbable=names)


def _stack_params(seed: int):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  shapes = {"conv1": (3, 3, 3, 4), "conv2": (3, 3, 4, 5), "conv3": (3, 3, 5, 6)}
  return {n: {"kernel": jax.random.normal(k, s), "bias": jnp.full(s[-1:], 0.3)}
          for k, (n, s) in zip(keys, shapes.items())}


@pytest.mark.parametrize("pool", [False, True])
def test_stacked_convs_match_numpy_composition(pool):
  model, params = _stack_model(pool), _stack_params(seed=1)
  w = circuits.expanded_weights(model, params, "conv1", "conv3")
  k2, k3 = (np.asarray(params[n]["kernel"], np.float64) for n in ("conv2", "conv3"))
  want = compose(compose(k2, box(5)), k3) if pool else compose(k2, k3)
  assert w.shape == (6,) + want.shape[:2] + (4,)
  np.testing.assert_allclose(w, as_expanded(want), rtol=1e-5, atol=1e-6)


def test_toy_model_strided_adjacent_layers(toy):
  """The stride-2 toy CNN: conv1 -> conv2 is conv2's kernel (pre- or post-ReLU)."""
  model, params = toy
  want = as_expanded(np.asarray(params["conv2"]["kernel"]))
  for target in ("conv2_pre_relu", "conv2"):
    w = circuits.expanded_weights(model, params, "conv1", target)
    np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-6)


def test_strongest_inputs_and_outputs_rank_signed_norms():
  w = np.zeros((2, 1, 2, 3), np.float32)
  w[0, 0, :, 0] = [3.0, -1.0]    # input 0: strong positive, weak negative
  w[0, 0, :, 1] = [-2.0, -2.0]   # input 1: negative only
  w[0, 0, :, 2] = [1.0, 0.0]
  w[1, 0, :, 2] = [5.0, 0.0]
  ins = circuits.strongest_inputs(w, 0, k=2)
  assert [i for i, _ in ins["positive"]] == [0, 2]
  assert [i for i, _ in ins["negative"]] == [1, 0]
  assert ins["negative"][0][1] == pytest.approx(np.sqrt(8.0))
  outs = circuits.strongest_outputs(w, 2, k=2)
  assert [j for j, _ in outs["positive"]] == [1, 0] and outs["negative"] == []


def test_layer_channel_family_selects_its_layer():
  make = circuits.layer_channel_family(("a", "b"))
  assert circuits.layer_channel_family(("a", "b")) is make   # one compilation
  acts = {"a": jnp.arange(6.0).reshape(1, 1, 2, 3),
          "b": 10 + jnp.arange(4.0).reshape(1, 1, 1, 4)}
  assert float(make(jnp.array([0, 2]))(acts)) == pytest.approx(3.5)
  assert float(make(jnp.array([1, 3]))(acts)) == pytest.approx(13.0)
  values = jax.vmap(lambda a: make(a)(acts))(jnp.array([[0, 1], [1, 0]]))
  np.testing.assert_allclose(values, [2.5, 10.0])


def test_max_pool_linearised_to_in_bounds_mean_at_borders():
  """Padding (Caffe ceil mode, -inf) is left out of the average, as in TF's
  avg_pool with SAME padding: corner windows average fewer values."""
  def apply(params, images, layers=None, perturb=None):
    a = jax.nn.relu(images[..., :2] - 0.5) + (perturb or {}).get("a", 0.0)
    pooled = jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 3, 3, 1),
                                   (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    acts = {"a": a, "pool": jax.nn.relu(pooled)}
    return acts if layers is None else {k: acts[k] for k in layers}

  model = base.Model(name="pool", apply=apply, min_size=1,
                     layers=(base.Layer("a", 2, 1), base.Layer("pool", 2, 2)),
                     perturbable=("a",))
  linear, zeros = circuits.linearised_map(model, None, "a", "pool", size=5)
  delta = np.asarray(jax.random.normal(jax.random.PRNGKey(3), zeros.shape))
  got = np.asarray(linear(jnp.asarray(delta)) - linear(zeros))[0]
  padded = np.pad(delta[0], ((1, 1), (1, 1), (0, 0)), constant_values=np.nan)
  want = np.stack([[np.nanmean(padded[2 * i:2 * i + 3, 2 * j:2 * j + 3], axis=(0, 1))
                    for j in range(3)] for i in range(3)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
