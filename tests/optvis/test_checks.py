"""Mistakes in an objective fail at the call, in one line, before compiling.

Every case here runs only abstract evaluation (``jax.eval_shape``): a compile
would show up in ``render.cache_info().compiles``, which the test asserts
stays unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

from atlasjax.optvis import objectives as O
from atlasjax.optvis import render

CFG = render.RenderConfig(size=32, steps=2)
VECTORS = np.ones((3, 16), np.float32)   # toy conv2 has 16 channels


def _branchy(arg):
  if arg["pow"] > 1:   # Python control flow on a per-item value
    return O.channel("conv2", 0)
  return O.channel("conv2", 1)


CASES = [
    ("plain function", lambda acts: acts["conv1"].mean(), None,
     "wrapped as Objective(fn, layers="),
    ("family returns a function",
     lambda c: (lambda acts: acts["conv1"][..., c].mean()), np.arange(2),
     "returned a function, not an Objective"),
    ("undeclared layer", O.Objective(lambda a: a["conv2"].mean(), "conv1", "x"),
     None, "reads acts['conv2'] but declares layers ('conv1')"),
    ("non-scalar", O.Objective(lambda a: a["conv1"][:, :2, :2, 0], ("conv1",), "y"),
     None, "returns an array of shape (1, 2, 2), not a scalar"),
    ("channel out of range", lambda c: O.channel("conv1", c), np.array([1, 600]),
     "channel 600 is out of range: 'conv1' has 8 channels, so it must be in 0…7"),
    ("position out of range", lambda pos: O.neuron("conv1", 0, pos),
     np.array([[1, 1], [100, 2]]), "position row 100 is out of range: 'conv1' is 22×22"),
    ("class out of range", O.class_logit(2000), None, "class 2000 is out of range"),
    ("static hyperparameter given per item", _branchy,
     {"v": VECTORS, "pow": np.array([0., 1., 2.])}, "uses args['pow'] as a Python value"),
    ("wrong vector width", lambda v: O.direction("conv2", v), np.ones((2, 8), np.float32),
     "fails on the activations it reads (conv2 [1, 11, 11, 16])"),
    ("form given as an array",
     lambda v: O.direction_neuron_cossim("conv2", v, form=np.zeros(1)), VECTORS,
     "form is static"),
]


@pytest.mark.parametrize("label,make,args,message", CASES, ids=[c[0] for c in CASES])
def test_mistake_is_one_line_before_any_compile(toy, label, make, args, message):
  model, params = toy
  before = len(render.cache_info().compiles)
  with pytest.raises(O.ObjectiveError) as err:
    render.render(model, params, make, args, CFG)
  text = str(err.value)
  assert message in text, (label, text)
  assert "\n" not in text
  assert len(render.cache_info().compiles) == before


def test_check_returns_the_shapes_the_objective_sees(toy):
  model, params = toy
  shapes = render.check(model, params, lambda c: O.channel("conv2", c),
                        np.arange(3), CFG)
  # 32 px through the standard transforms (pad 12, jitter 8, scale, rotate,
  # jitter 4): the toy's stride-2 and stride-4 layers.
  assert shapes["input"] == (1, 32, 32, 3)
  assert shapes["conv2"][0] == 1 and shapes["conv2"][-1] == 16
  plain = render.check(model, params, lambda c: O.channel("conv2", c), np.arange(3),
                       render.RenderConfig(size=32, transforms="none"))
  assert plain["conv2"] == (1, 8, 8, 16)


def test_every_builtin_numeric_argument_traces(toy):
  """Per-item arrays for every numeric hyperparameter: no Python control flow."""
  model, params = toy
  n = 3
  args = {"c": np.arange(n), "pos": np.array([[1, 2], [3, 4], [0, 0]]),
          "pow": np.array([0., 1., 4.], np.float32), "w": np.array([.5, 1., 2.], np.float32),
          "v": np.ones((n, 16), np.float32), "k": np.array([0, 1, 2]),
          "decay": np.array([2., 3., 4.], np.float32), "img": np.zeros(n, np.int32),
          "S": np.tile(np.eye(16, dtype=np.float32), (n, 1, 1))}

  def make(a):
    return (a["w"] * O.neuron("conv2", a["c"], a["pos"])
            + O.direction("conv2", a["v"], a["pow"])
            + O.direction_neuron_cossim("conv2", a["v"], a["pos"], a["pow"], a["S"])
            + O.direction_neuron("conv2", a["v"], a["pos"], a["pow"])
            + O.class_logit(a["k"]) + O.class_probability(a["k"])
            + O.channel_interpolate("conv1", a["c"], "conv2", a["c"])
            + O.alignment("conv1", a["decay"]) - a["w"] * O.l1(constant=a["w"])
            + O.on_image(O.channel("conv1", a["c"]), a["img"]))
  shapes = render.check(model, params, make, args, CFG)
  assert set(shapes) == {"conv1", "conv2", "logits", "input"}


def test_cached_family_still_checks_new_args(toy):
  """The bounds check runs on every call, also when the program is cached."""
  model, params = toy
  make = lambda c: O.channel("conv1", c)
  render.check(model, params, make, np.arange(2), CFG)
  with pytest.raises(O.ObjectiveError, match="channel 9 is out of range"):
    render.render(model, params, make, np.array([0, 9]), CFG)
