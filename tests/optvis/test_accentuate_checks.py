"""Issue 27, item 5: accentuation refuses a bad feature family and
size-changing transforms in one line, before anything is rendered."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax.optvis import accentuate as acc
from atlasjax.optvis import objectives

PHOTOS = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 32, 32, 3)),
                     jnp.float32)


@pytest.mark.parametrize("make, config, needle", [
    (lambda c: objectives.channel("conv2", c), acc.DEFAULT_CONFIG, "16 channels"),
    (lambda c: jnp.float32(c), acc.DEFAULT_CONFIG, "not an Objective"),
    (lambda c: objectives.channel("conv2", c),
     dataclasses.replace(acc.DEFAULT_CONFIG, transforms="standard"), "keep the size"),
])
def test_bad_family_or_transforms_is_one_line(toy, make, config, needle):
  model, params = toy
  with pytest.raises(ValueError, match=needle) as e:
    acc.accentuate(model, params, PHOTOS, make, jnp.array([3, 40]), "conv1",
                   config=config)
  assert "\n" not in str(e.value)
