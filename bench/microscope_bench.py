r"""Rendering every unit of a layer: batched vs one unit at a time.

  python bench/microscope_bench.py                          # mixed3a, 64 px, 32 steps
  python bench/microscope_bench.py --layer=mixed4a --size=128 --steps=128

The Microscope renders a whole layer with the batched renderer (chunks of
--chunk_size channels, one compiled program). Lucid/Lucent users render one
unit at a time. In the same run this measures

* batched: every channel of --layer in chunks of --chunk_size (after one
  warm-up chunk that pays the compilation): the whole-layer time and units/s;
* one at a time: --single units in all, rendered with chunk_size=1 between
  the batched chunks (interleaved, so both modes see the same background
  load; after a warm-up unit): units/s and the whole-layer time that rate
  implies (extrapolated: all units singly would take too long here).

Prints one JSON line per mode plus a summary line with the ratio of rates,
each with the machine (bench/machine.py) and the load average before/after.
"""

import json
import os
import time

from absl import app
from absl import flags
import jax
import numpy as np

import machine
from atlasjax import models
from atlasjax.microscope import pipeline
from atlasjax.optvis import render as render_lib

_LAYER = flags.DEFINE_string("layer", "mixed3a", "Layer rendered.")
_SIZE = flags.DEFINE_integer("size", 64, "Render side.")
_STEPS = flags.DEFINE_integer("steps", 32, "Optimisation steps.")
_CHUNK = flags.DEFINE_integer("chunk_size", 64, "Channels per batched call.")
_SINGLE = flags.DEFINE_integer("single", 16, "Units rendered one at a time.")
_DATA = flags.DEFINE_string("data", None, "Data root.")


def _time_render(model, params, layer, channels, config):
  t = time.perf_counter()
  result = render_lib.render(model, params, pipeline.channel_family(layer),
                             args=np.asarray(channels, np.int32), config=config,
                             key=jax.random.PRNGKey(0), item_ids=channels)
  jax.block_until_ready(result.images)
  return time.perf_counter() - t


def main(argv):
  del argv
  model, params = models.load(data=_DATA.value)
  layer = model.layer(_LAYER.value)
  base = {"workload": f"microscope_layer:{layer.name}", "layer": layer.name,
          "units": layer.depth, "size": _SIZE.value, "steps": _STEPS.value,
          "machine": machine.describe()}
  channels = np.arange(layer.depth)
  batched = render_lib.RenderConfig(size=_SIZE.value, steps=_STEPS.value,
                                    chunk_size=_CHUNK.value)
  single = render_lib.RenderConfig(size=_SIZE.value, steps=_STEPS.value,
                                   chunk_size=1)
  # Compile both programs first (one chunk, one unit), then interleave: each
  # batched chunk is followed by --single units rendered one at a time, so
  # both modes see the same background load.
  compile_b = _time_render(model, params, layer.name, channels[:_CHUNK.value], batched)
  compile_s = _time_render(model, params, layer.name, channels[:1], single)
  load0 = os.getloadavg()[0]
  chunk_times, unit_times = [], []
  starts = range(0, layer.depth, _CHUNK.value)
  per_chunk = max(1, _SINGLE.value // len(starts))
  for n, start in enumerate(starts):
    chunk_times.append(_time_render(model, params, layer.name,
                                    channels[start:start + _CHUNK.value], batched))
    for i in range(per_chunk):
      c = (start + i + 1) % layer.depth
      unit_times.append(_time_render(model, params, layer.name,
                                     channels[c:c + 1], single))
  load1 = os.getloadavg()[0]
  layer_s = sum(chunk_times)
  rate_b = layer.depth / layer_s
  rate_s = len(unit_times) / sum(unit_times)
  loads = [round(load0, 2), round(load1, 2)]
  print(json.dumps({**base, "mode": "batched", "chunk_size": _CHUNK.value,
                    "compile_and_first_chunk_s": round(compile_b, 2),
                    "chunk_s": [round(t, 2) for t in chunk_times],
                    "layer_s": round(layer_s, 1),
                    "units_per_s": round(rate_b, 3),
                    "image_steps_per_s": round(rate_b * _STEPS.value, 1),
                    "load_avg": loads}), flush=True)
  print(json.dumps({**base, "mode": "one_at_a_time", "units_timed": len(unit_times),
                    "compile_and_first_unit_s": round(compile_s, 2),
                    "unit_s_mean": round(float(np.mean(unit_times)), 3),
                    "units_per_s": round(rate_s, 3),
                    "image_steps_per_s": round(rate_s * _STEPS.value, 1),
                    "layer_s_extrapolated": round(layer.depth / rate_s, 1),
                    "load_avg": loads}), flush=True)
  print(json.dumps({**base, "mode": "summary",
                    "batched_over_single_rate": round(rate_b / rate_s, 2),
                    "load_avg": loads}))


if __name__ == "__main__":
  app.run(main)
