"""A tiny linen CNN the library has never seen, through ``models.from_flax``."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from atlasjax import models

SIZE = 32


class Stage(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    return nn.relu(nn.Conv(self.features, (3, 3), strides=2, name="conv")(x))


class TinyCNN(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = Stage(8, name="stage1")(x)
    x = Stage(12, name="stage2")(x)
    return nn.Dense(10, name="head")(x.mean(axis=(1, 2)))


def tiny_cnn():
  """``(model, params)`` of :class:`TinyCNN` (seeded)."""
  module = TinyCNN()
  variables = module.init(jax.random.PRNGKey(1), jnp.zeros((1, SIZE, SIZE, 3)))
  return models.from_flax(module, variables, input_size=SIZE, name="tiny_cnn")
