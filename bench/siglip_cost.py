r"""What a SigLIP image tower costs per image: renders and collection.

  nice -n 5 python bench/siglip_cost.py                       # B/16 and So400m/14
  python bench/siglip_cost.py --models=b16 --steps=4 --rounds=2

The SigLIP towers of atlasjax's zoo (``vit.TOWER_SPECS``: ``siglip_b16``,
ViT-B/16 with a MAP head, and ``siglip_so400m14``, So400m/14 — width 1152,
27 blocks, 428 M parameters) at 224 px, random weights (cost does not depend
on the values), through ``vit.build`` exactly as ``models.load`` builds them.
One JSON line per measurement:

* ``render``: ``render.render`` of ``--batch`` channel objectives at the
  middle block's MLP hidden layer (Ghiasi et al.'s unit), standard
  transforms, ``--steps`` steps, in float32 and bfloat16
  (``RenderConfig(precision=...)``), against a bare ``jit(grad)`` of the
  same objective w.r.t. a ``[batch, side, side, 3]`` input of the render's
  view side (``grad_timing.compile_grad``) on the same tower in the same
  run: ``seconds_per_image_step``, ``bare_grad_seconds_per_image``,
  ``vs_bare_grad`` (the renderer's step over the bare gradient);
* ``collect``: ``collect.make_sample_fn`` (the jitted batch of
  ``collect.run``: forward to the layer, vectors at sampled patch-grid
  positions; no attributions — a SigLIP tower has no classes) against a
  plain jitted forward to the same layer: ``seconds_per_image``,
  ``vs_forward``.

Fastest of ``--rounds`` (the least disturbed figure on a shared machine);
every line records the machine and its load average.
"""

import functools
import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import grad_timing  # bench/ (this script's folder is on sys.path)
import machine
from atlasjax.atlas import collect
from atlasjax.models import vit
from atlasjax.optvis import render

TOWERS = {"b16": "siglip_b16", "so400m14": "siglip_so400m14"}

_MODELS = flags.DEFINE_list("models", list(TOWERS), f"Towers: {', '.join(TOWERS)}.")
_BATCH = flags.DEFINE_integer("batch", 1, "Objectives rendered together.")
_STEPS = flags.DEFINE_integer("steps", 4, "Steps per render.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Timed rounds (fastest kept).")
_COLLECT_BATCH = flags.DEFINE_integer("collect_batch", 2, "Images per collection batch.")
_PRECISIONS = flags.DEFINE_list("precisions", ["float32", "bfloat16"],
                                "Render precisions.")
_STAGES = flags.DEFINE_list("stages", ["render", "collect"], "Which measurements.")


def _best(fn, rounds):
  best = float("inf")
  for _ in range(rounds):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t)
  return best


def _view_side(model, family, config) -> int:
  renderer = render.build(model, family, config)
  img = jnp.zeros((config.size, config.size, 3))
  return jax.eval_shape(renderer.transform, jax.random.PRNGKey(0), img).shape[0]


def render_lines(model, params, layer, base):
  """Renders at each precision, then the bare gradient, on the same tower."""
  batch, steps = _BATCH.value, _STEPS.value
  family = grad_timing.Channel(layer)
  key, args = jax.random.PRNGKey(0), jnp.arange(batch)
  lines = []
  side = None
  for precision in _PRECISIONS.value:
    config = render.RenderConfig(size=model.input_size, steps=steps, transforms="standard",
                                 chunk_size=batch, precision=precision)
    side = side or _view_side(model, family, config)
    call = lambda c=config: render.render(model, params, family, args, c, key).images
    t = time.perf_counter()
    jax.block_until_ready(call())
    first_s = time.perf_counter() - t
    seconds = _best(call, _ROUNDS.value)
    lines.append({**base, "workload": "render", "precision": precision, "layer": layer,
                  "size": model.input_size, "view_side": side, "batch": batch,
                  "steps": steps, "seconds_per_image_step": round(seconds / (batch * steps), 3),
                  "first_call_s": round(first_s, 1)})
  bare, _, compile_s = grad_timing.compile_grad(model, params, layer, batch, side)
  bare_s = _best(bare, _ROUNDS.value) / batch
  for line in lines:
    yield {**line, "bare_grad_seconds_per_image": round(bare_s, 3),
           "vs_bare_grad": round(line["seconds_per_image_step"] / bare_s, 2),
           "bare_compile_s": round(compile_s, 1), "machine": machine.describe()}


def collect_lines(model, params, layer, base):
  """``collect``'s jitted batch against a plain forward to the layer."""
  n, size = _COLLECT_BATCH.value, model.input_size
  images = jax.random.uniform(jax.random.PRNGKey(1), (n, size, size, 3))
  grid = model.layer(layer).stride and size // model.layer(layer).stride
  positions = jnp.asarray(np.random.default_rng(0).integers(1, grid - 1, (1, n, 2)),
                          jnp.int32)
  forward = jax.jit(lambda p, x: model.apply(p, x, layers=(layer,)))
  sample = collect.make_sample_fn(model, (layer,), attributions=False)
  calls = {"forward": lambda: forward(params, images),
           "collect": functools.partial(sample, params, images, positions)}
  for call in calls.values():
    jax.block_until_ready(call())                    # compile
  seconds = {name: _best(call, _ROUNDS.value) for name, call in calls.items()}
  yield {**base, "workload": "collect", "attributions": False, "layer": layer,
         "batch": n, "seconds_per_image": round(seconds["collect"] / n, 3),
         "forward_seconds_per_image": round(seconds["forward"] / n, 3),
         "vs_forward": round(seconds["collect"] / seconds["forward"], 2),
         "machine": machine.describe()}


def main(argv):
  del argv
  for short in _MODELS.value:
    spec = vit.TOWER_SPECS[TOWERS[short]]
    t = time.perf_counter()
    model = vit.build(spec)
    params = vit.init(jax.random.PRNGKey(0), spec)
    base = {"model": spec.name, "params": vit.param_count(spec),
            "input_size": spec.image_size, "build_init_s": round(time.perf_counter() - t, 1)}
    layer = model.default_layer
    stages = {"render": render_lines, "collect": collect_lines}
    for stage in _STAGES.value:
      for line in stages[stage](model, params, layer, base):
        print(json.dumps(line), flush=True)
    del params


if __name__ == "__main__":
  app.run(main)
