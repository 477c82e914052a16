"""The five research tasks of issue 27, written as the docs show them.

1. four channels of one layer in one call;
2. a push-pull objective (raise one unit, lower one of a deeper layer) and a
   caricature of a photo;
3. eight directions of a layer in one call, with ``cossim_pow`` varying per
   item;
4. an NNX CNN (``nnx.List``, functional ReLUs) and a linen ViT through
   ``models.from_flax``;
5. a custom objective family for atlas icons (``AtlasConfig(objective=...)``);

then the two things that must not compile again: the family of task 1 typed
again (a new lambda with the same code) and task 3 with other per-item powers.

:func:`run` performs them on any model given the :class:`Units` that stand
for GoogLeNet's (``GOOGLENET``; ``TOY`` for ``tests/toy_model.py``) and
returns, per task, the render compiles and cache hits it cost
(``render.cache_info()``). ``bench/first_image.py --parts=compiles`` runs it on
GoogLeNet; ``tests/bench/test_research_tasks.py`` on the toy CNN.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import tempfile
import time
from typing import Any, Callable

import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from atlasjax import data, images, models
from atlasjax.atlas import collect, layout, pipeline, render_atlas
from atlasjax.optvis import objectives, render

# The cosine-similarity powers of task 3's eight items (0: the plain dot).
POWERS = (0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0)
DIRECTIONS = len(POWERS)
# Task 4's small networks: widths of the NNX CNN's stages; the ViT's size.
NNX_WIDTHS = (3, 8, 16, 32)
VIT_WIDTH, VIT_PATCH, VIT_DEPTH, VIT_HEADS = 32, 8, 2, 2
TOY_INPUT = 32
ATLAS_PHOTOS = 8


@dataclasses.dataclass(frozen=True)
class Units:
  """The layers and units the tasks name (GoogLeNet's, or stand-ins)."""
  channels: tuple[str, tuple[int, ...]]   # task 1: four channels of a layer
  push: tuple[str, int]                   # task 2: raised ...
  pull: tuple[str, int]                   # ... and lowered (a deeper layer)
  caricature: str                         # task 2: the caricature's layer
  directions: str                         # task 3
  atlas: str                              # task 5


GOOGLENET = Units(channels=("mixed4a", (508, 465, 97, 1)), push=("mixed4a", 508),
                  pull=("mixed4b", 304), caricature="mixed4b",
                  directions="mixed4c", atlas="mixed4c")
TOY = Units(channels=("conv2", (0, 3, 5, 9)), push=("conv1", 5),
            pull=("conv2", 7), caricature="conv2", directions="conv2",
            atlas="conv2")


# ----------------------------------------------------------------------------
# Task 4's networks, as a user would write them.

class NNXNet(nnx.Module):
  """Strided convolutions in an ``nnx.List``, functional ReLUs, a linear head."""

  def __init__(self, rngs: nnx.Rngs):
    self.convs = nnx.List([nnx.Conv(a, b, (3, 3), strides=2, rngs=rngs)
                           for a, b in zip(NNX_WIDTHS[:-1], NNX_WIDTHS[1:])])
    self.head = nnx.Linear(NNX_WIDTHS[-1], 10, rngs=rngs)

  def __call__(self, x):
    for conv in self.convs:
      x = nnx.relu(conv(x))
    return self.head(x.mean((1, 2)))


class ViT(nn.Module):
  """A pre-norm linen ViT: patch embedding, CLS token, learned positions."""

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(VIT_WIDTH, (VIT_PATCH, VIT_PATCH), strides=VIT_PATCH,
                padding="VALID", name="patch_embed")(x)
    b, h, w, d = x.shape
    x = x.reshape(b, h * w, d)
    cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, d))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), x], axis=1)
    x = x + self.param("pos_embed", nn.initializers.normal(0.02), (1, 1 + h * w, d))
    for i in range(VIT_DEPTH):
      y = nn.LayerNorm(name=f"block{i}_ln1")(x)
      x = x + nn.MultiHeadDotProductAttention(VIT_HEADS, name=f"block{i}_attn")(y, y)
      y = nn.gelu(nn.Dense(4 * d, name=f"block{i}_fc1")(nn.LayerNorm(name=f"block{i}_ln2")(x)))
      x = x + nn.Dense(d, name=f"block{i}_fc2")(y)
    return nn.Dense(10, name="head")(x[:, 0])


# ----------------------------------------------------------------------------
# The tasks.

def four_channels(model, params, units: Units, config) -> render.RenderResult:
  layer, channels = units.channels
  return render.render(model, params, lambda c: objectives.channel(layer, c),
                       jnp.array(channels), config)


def four_channels_retyped(model, params, units: Units, config) -> render.RenderResult:
  """Task 1's family typed again: another lambda object, the same code."""
  layer, channels = units.channels
  return render.render(model, params, lambda c: objectives.channel(layer, c),
                       jnp.array(channels)[::-1], config)


def push_pull(model, params, units: Units, config) -> render.RenderResult:
  (up, i), (down, j) = units.push, units.pull
  return render.render(
      model, params, lambda: objectives.channel(up, i) - objectives.channel(down, j),
      config=config)


def caricature(model, params, units: Units, config, photo) -> render.RenderResult:
  return render.render(
      model, params, lambda: objectives.caricature(units.caricature, photo),
      config=config)


def directions(model, params, units: Units, config, key,
               powers=POWERS) -> render.RenderResult:
  depth = model.layer(units.directions).depth
  args = {"vec": jax.random.normal(key, (len(powers), depth)),
          "pow": jnp.asarray(powers, jnp.float32)}
  return render.render(
      model, params,
      lambda a: objectives.direction(units.directions, a["vec"], cossim_pow=a["pow"]),
      args, config)


def nnx_and_vit(config) -> tuple[render.RenderResult, render.RenderResult]:
  cnn, cnn_params = models.from_flax(NNXNet(nnx.Rngs(0)), input_size=TOY_INPUT)
  vit_module = ViT()
  variables = jax.jit(vit_module.init)(jax.random.PRNGKey(0),
                                       jnp.zeros((1, TOY_INPUT, TOY_INPUT, 3)))
  vit, vit_params = models.from_flax(vit_module, variables, input_size=TOY_INPUT)
  return (render.render(cnn, cnn_params, lambda c: objectives.channel("convs/2:input", c),
                        jnp.arange(4), config),
          render.render(vit, vit_params, lambda c: objectives.channel("block1_fc2:input", c),
                        jnp.arange(4), config))


def atlas_icons(model, params, units: Units, config, photos: pathlib.Path,
                workdir: pathlib.Path) -> pipeline.PipelineConfig:
  """A small atlas whose icons maximise a custom family (a plain dot product
  with the cell's direction plus a little total variation)."""
  layer = units.atlas
  family = lambda d: (objectives.direction(layer, d)
                      - 1e-3 * objectives.total_variation())
  pipe = pipeline.PipelineConfig(
      collect=collect.CollectConfig(layers=(layer,), crops_per_image=2,
                                    image_size=config.size),
      layout=layout.LayoutConfig(layer=layer, n_neighbors=4),
      atlas=render_atlas.AtlasConfig(layer=layer, grid_sizes=(2,), min_density=(0,),
                                     icon_size=config.size, steps=config.steps,
                                     objective=family),
      viewer=False)
  pipeline.run(pipe, model, params, photos, workdir)
  return pipe


def _sample_photos(count: int) -> pathlib.Path:
  folder = pathlib.Path(tempfile.mkdtemp(prefix="research_tasks_photos_"))
  for path in sorted(data.sample_dir().glob("*.jpg"))[:count]:
    shutil.copy(path, folder / path.name)
  return folder


def _counted(name: str, task: Callable[[], Any]) -> dict:
  """Runs ``task``; what it cost in render compiles and cache hits."""
  before = render.cache_info()
  start = time.perf_counter()
  task()
  after = render.cache_info()
  new = after.compiles[len(before.compiles):]
  return {"task": name, "compiles": len(new), "hits": after.hits - before.hits,
          "misses": after.misses - before.misses,
          "compile_s": round(sum(c.seconds for c in new), 2),
          "wall_s": round(time.perf_counter() - start, 2)}


def run(model, params, units: Units, config: render.RenderConfig,
        atlas: bool = True) -> list[dict]:
  """The five tasks and the two repeats, in order; one record per step."""
  key = jax.random.PRNGKey(0)
  photo_dir = _sample_photos(ATLAS_PHOTOS)
  photo = images.read_image(sorted(photo_dir.glob("*.jpg"))[0])
  work = pathlib.Path(tempfile.mkdtemp(prefix="research_tasks_atlas_"))
  steps = [
      ("1 four channels", lambda: four_channels(model, params, units, config)),
      ("2 push-pull", lambda: push_pull(model, params, units, config)),
      ("2 caricature", lambda: caricature(model, params, units, config, photo)),
      ("3 eight directions, per-item cossim_pow",
       lambda: directions(model, params, units, config, key)),
      ("4 NNX CNN and linen ViT", lambda: nnx_and_vit(config)),
  ]
  if atlas:
    steps.append(("5 atlas icons, custom family",
                  lambda: atlas_icons(model, params, units, config, photo_dir, work)))
  steps += [
      ("1 again, family retyped", lambda: four_channels_retyped(model, params, units, config)),
      ("3 again, other per-item powers",
       lambda: directions(model, params, units, config, jax.random.fold_in(key, 1),
                          POWERS[::-1])),
  ]
  try:
    return [_counted(name, task) for name, task in steps]
  finally:
    shutil.rmtree(photo_dir, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
