r"""Vision Transformers through ``from_flax``: render and collection speed.

  nice -n 5 python bench/vit_bench.py                  # ViT-Ti and ViT-S, 112 px
  python bench/vit_bench.py --models=ti --input_size=224 --batch=4 --steps=8

A random linen ViT of the published sizes (ViT-Ti: width 192, 3 heads; ViT-S:
width 384, 6 heads; 12 pre-norm blocks, MLP ×4, 16 px patches, CLS token,
learned position embeddings — so a fixed input size) goes through
``models.from_flax`` with no declaration. Per model, one JSON line per
measurement:

* ``render``: the batched renderer (``lax.scan`` over steps, ``vmap`` over
  ``--batch`` channel objectives at ``--layer``, standard transforms, whose
  views the model resamples to its input size) with the CPU jaxpr rewrite on
  and off (``RenderConfig(cpu_rewrite=...)``), against a plain
  ``jit(grad)`` of the same objective on the same batch at the same view
  side (resampling included): ``image_steps_per_sec``,
  ``bare_grad_image_steps_per_sec`` and their ratio ``vs_bare_grad``, timed in
  interleaved ``--rounds`` (fastest of each: on a shared machine the minimum
  is the figure least disturbed, and both sides see the same disturbances).
* ``collect``: ``collect.make_sample_fn`` — the jitted per-batch computation
  of ``collect.run`` (forward, top-5, one JVP attribution per layer) — with
  and without attributions, against a plain jitted forward to the same
  layer and the logits: ``images_per_sec`` and ``vs_forward``.

Every line carries the machine description and the 1-minute load average.
"""

import json
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import grad_timing  # bench/ (this script's folder is on sys.path)
import machine
from atlasjax import models
from atlasjax.atlas import collect
from atlasjax.optvis import render

# (width, heads) of the published ViT sizes (Dosovitskiy et al.; Touvron et al.).
SIZES = {"ti": (192, 3), "s": (384, 6), "b": (768, 12)}
DEPTH = 12
PATCH = 16
MLP_RATIO = 4
CLASSES = 1000
INIT_STD = 0.02

_MODELS = flags.DEFINE_list("models", ["ti", "s"], "ViT sizes: ti, s, b.")
_INPUT = flags.DEFINE_integer("input_size", 112, "The ViT's (fixed) input side.")
_SIZE = flags.DEFINE_integer("size", 0, "Render side (0 = input_size).")
_BATCH = flags.DEFINE_integer("batch", 8, "Objectives rendered together.")
_STEPS = flags.DEFINE_integer("steps", 16, "Steps per render.")
_LAYER = flags.DEFINE_string("layer", "block5/fc2:input",
                             "Layer of the channel objectives (Ghiasi's MLP hidden).")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Interleaved renderer / bare-gradient rounds.")
_REPS = flags.DEFINE_integer("reps", 2, "Bare-gradient calls per round.")
_COLLECT_BATCH = flags.DEFINE_integer("collect_batch", 16, "Images per collection batch.")
_STAGES = flags.DEFINE_list("stages", ["render", "collect"], "Which measurements.")


class Block(nn.Module):
  width: int
  heads: int

  @nn.compact
  def __call__(self, x):
    y = nn.LayerNorm(name="ln1")(x)
    x = x + nn.MultiHeadDotProductAttention(self.heads, name="attn")(y, y)
    y = nn.gelu(nn.Dense(MLP_RATIO * self.width, name="fc1")(nn.LayerNorm(name="ln2")(x)))
    return x + nn.Dense(self.width, name="fc2")(y)


class ViT(nn.Module):
  """A plain ViT as a user writes it; random weights, timing only."""
  width: int
  heads: int

  @nn.compact
  def __call__(self, images):
    x = nn.Conv(self.width, (PATCH, PATCH), PATCH, padding="VALID", name="embed")(images)
    b, h, w, d = x.shape
    cls = self.param("cls", nn.initializers.normal(INIT_STD), (1, 1, d))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), x.reshape(b, h * w, d)], 1)
    x = x + self.param("pos", nn.initializers.normal(INIT_STD), (1, 1 + h * w, d))
    for i in range(DEPTH):
      x = Block(self.width, self.heads, name=f"block{i}")(x)
    return nn.Dense(CLASSES, name="head")(nn.LayerNorm(name="norm")(x)[:, 0])


def build(name: str, input_size: int):
  width, heads = SIZES[name]
  module = ViT(width, heads)
  variables = jax.jit(module.init)(jax.random.PRNGKey(0),
                                   jnp.zeros((1, input_size, input_size, 3)))
  t = time.perf_counter()
  model, params = models.from_flax(module, variables, input_size=input_size,
                                   name=f"vit_{name}{PATCH}")
  return model, params, time.perf_counter() - t


def _best(fn, rounds):
  best = float("inf")
  for _ in range(rounds):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return best


def _view_side(renderer, size) -> int:
  img = jnp.zeros((size, size, 3))
  return jax.eval_shape(renderer.transform, jax.random.PRNGKey(0), img).shape[0]


def render_lines(model, params, base):
  """Renders with the rewrite on and off and the bare gradient, interleaved."""
  size, batch, steps, layer = _SIZE.value or _INPUT.value, _BATCH.value, _STEPS.value, _LAYER.value
  family = grad_timing.Channel(layer)
  key, args = jax.random.PRNGKey(0), jnp.arange(batch)
  configs = {rewrite: render.RenderConfig(size=size, steps=steps, transforms="standard",
                                          chunk_size=batch, cpu_rewrite=rewrite)
             for rewrite in (True, False)}
  first_s = {}
  for rewrite, cfg in configs.items():
    t = time.perf_counter()
    jax.block_until_ready(render.render(model, params, family, args, cfg, key).images)
    first_s[rewrite] = time.perf_counter() - t         # compile + one render
  side = _view_side(render.build(model, family, configs[True]), size)
  bare, _, bare_compile_s = grad_timing.compile_grad(model, params, layer, batch, side)
  seconds = {rewrite: float("inf") for rewrite in configs}
  bare_s = float("inf")
  for r in range(_ROUNDS.value):
    for rewrite, cfg in configs.items():
      t = time.perf_counter()
      jax.block_until_ready(
          render.render(model, params, family, args + (r + 1) * batch, cfg, key).images)
      seconds[rewrite] = min(seconds[rewrite], time.perf_counter() - t)
    bare_s = min(bare_s, _best(bare, _REPS.value))
  bare_rate = batch / bare_s
  for rewrite in configs:
    rate = batch * steps / seconds[rewrite]
    yield {**base, "workload": "render", "cpu_rewrite": rewrite, "size": size,
           "view_side": side, "batch": batch, "steps": steps, "layer": layer,
           "image_steps_per_sec": round(rate, 2),
           "bare_grad_image_steps_per_sec": round(bare_rate, 2),
           "vs_bare_grad": round(rate / bare_rate, 3),
           "rewrite_on_vs_off": round(seconds[False] / seconds[True], 3),
           "first_call_s": round(first_s[rewrite], 1),
           "bare_compile_s": round(bare_compile_s, 1), "rounds": _ROUNDS.value,
           "machine": machine.describe()}


def collect_lines(model, params, base):
  layer, n = _LAYER.value, _COLLECT_BATCH.value
  images = jax.random.uniform(jax.random.PRNGKey(1), (n, _INPUT.value, _INPUT.value, 3))
  grid = model.apply(params, images[:1], layers=(layer,))[layer].shape[1]
  rng = np.random.default_rng(0)
  positions = jnp.asarray(rng.integers(1, grid - 1, (1, n, 2)), jnp.int32)
  forward = jax.jit(lambda p, x: model.apply(p, x, layers=(layer, "logits")))
  jax.block_until_ready(forward(params, images))
  forward_s = _best(lambda: jax.block_until_ready(forward(params, images)), _ROUNDS.value + 1)
  for attributions in (True, False):
    fn = collect.make_sample_fn(model, (layer,), attributions)
    jax.block_until_ready(fn(params, images, positions))
    seconds = _best(lambda: jax.block_until_ready(fn(params, images, positions)),
                    _ROUNDS.value + 1)
    yield ({**base, "workload": "collect", "attributions": attributions,
                "layer": layer, "batch": n, "images_per_sec": round(n / seconds, 2),
                "forward_images_per_sec": round(n / forward_s, 2),
                "vs_forward": round(forward_s / seconds, 3),
                "machine": machine.describe()})


def main(argv):
  del argv
  for name in _MODELS.value:
    model, params, build_s = build(name, _INPUT.value)
    base = {"model": model.name, "input_size": _INPUT.value,
            "fixed_input_size": model.fixed_input_size,
            "spatial_layers": sum(l.spatial for l in model.layers),
            "from_flax_s": round(build_s, 2)}
    stages = {"render": render_lines, "collect": collect_lines}
    for stage in _STAGES.value:
      for line in stages[stage](model, params, base):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
  app.run(main)
