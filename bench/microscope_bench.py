r"""Rendering every unit of a layer: batched vs one unit at a time.

  python bench/microscope_bench.py                          # mixed3a, 64 px, 32 steps
  python bench/microscope_bench.py --layer=mixed4a --size=128 --steps=128

The Microscope renders a whole layer with the batched renderer (chunks of
--chunk_size channels, one compiled program). Lucid/Lucent users render one
unit at a time. In the same run this measures

* batched: every channel of --layer in chunks (after one warm-up chunk that
  pays the compilation), the whole-layer time and units/s;
* one at a time: --single units rendered with chunk_size=1 (after a warm-up
  unit), units/s, and the whole-layer time that rate implies (extrapolated:
  rendering all units singly would take too long on a shared CPU).

Prints one JSON line per mode plus a summary line with the speed-up, each with
the machine (bench/machine.py) and the load average before and after.
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
_SINGLE = flags.DEFINE_integer("single", 8, "Units rendered one at a time.")
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
  load0 = os.getloadavg()
  warm = _time_render(model, params, layer.name, channels[:_CHUNK.value], batched)
  whole = _time_render(model, params, layer.name, channels, batched)
  rec_b = {**base, "mode": "batched", "chunk_size": _CHUNK.value,
           "compile_and_first_chunk_s": round(warm, 2),
           "layer_s": round(whole, 2),
           "units_per_s": round(layer.depth / whole, 3),
           "load_avg": [round(x, 2) for x in (load0[0], os.getloadavg()[0])]}
  print(json.dumps(rec_b), flush=True)

  single = render_lib.RenderConfig(size=_SIZE.value, steps=_STEPS.value,
                                   chunk_size=1)
  load0 = os.getloadavg()
  warm = _time_render(model, params, layer.name, channels[:1], single)
  times = [_time_render(model, params, layer.name, channels[i:i + 1], single)
           for i in range(1, 1 + _SINGLE.value)]
  rate = len(times) / sum(times)
  rec_s = {**base, "mode": "one_at_a_time", "units_timed": len(times),
           "compile_and_first_unit_s": round(warm, 2),
           "unit_s_mean": round(float(np.mean(times)), 3),
           "units_per_s": round(rate, 3),
           "layer_s_extrapolated": round(layer.depth / rate, 1),
           "load_avg": [round(x, 2) for x in (load0[0], os.getloadavg()[0])]}
  print(json.dumps(rec_s), flush=True)
  print(json.dumps({**base, "mode": "summary",
                    "speedup_batched_over_single": round(
                        rec_b["units_per_s"] / rec_s["units_per_s"], 2)}))


if __name__ == "__main__":
  app.run(main)
