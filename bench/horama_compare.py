r"""atlasjax's MaCo against horama 0.3.0 (PyTorch), same network, same run.

  pip install torch==2.13.0 torchvision einops horama==0.3.0   # dev only
  python bench/horama_compare.py --layer=mixed4a --channels=0,97,300 --size=128 --steps=32

Both render MaCo visualizations of ``channel(--layer, c)`` on BVLC GoogLeNet:
horama's ``maco`` on the PyTorch reference network (``bench/torch_googlenet.py``,
the same BVLC weights; 6 crops per step at ``--size`` px, NAdam lr 1, its
defaults otherwise) and atlasjax's renderer (``param="maco"``,
``transforms="maco"``: 6 crops per step, Adam at each of ``--lrs``, ReLU
redirection for the first 16 steps as the renderer's default), ``--steps`` each.
horama downloads its spectrum at run time; it is handed ours instead (the
``spectrum_decorrelated.npy`` it looks for in the working directory).
torchvision wheels on PyPI do not match the local CPU torch 2.13 build
(``torchvision::nms does not exist``), so horama's two torchvision imports
get stand-ins (:func:`_torchvision_standin`): ``roi_align`` with
``sampling_ratio=1`` written with ``grid_sample`` (what torchvision's adaptive
ratio gives at horama's sizes: a 25–30 % box onto 2× the crop size), and
``download_url``, which must not be called. Every
final image is scored by the same judge, atlasjax's GoogLeNet on the whole
image (channel mean, no transforms); time per step excludes compilation (and
horama's first step). Prints one JSON line per channel and system, and a
summary line.
"""

import json
import os
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import machine  # bench/ (this script's folder is on sys.path)
from atlasjax import data as data_lib
from atlasjax import models
from atlasjax.models import weights
from atlasjax.optvis import objectives
from atlasjax.optvis import render
from atlasjax.optvis import spectrum

_LAYER = flags.DEFINE_string("layer", "mixed4a", "Layer.")
_CHANNELS = flags.DEFINE_list("channels", ["0", "97", "300"], "Channels.")
_SIZE = flags.DEFINE_integer("size", 128, "Image side (and crop size).")
_STEPS = flags.DEFINE_integer("steps", 32, "Optimisation steps.")
_LRS = flags.DEFINE_list("lrs", ["0.05"], "atlasjax Adam learning rates to run.")


def _torchvision_standin():
  """``torchvision.ops.roi_align`` / ``datasets.utils.download_url`` for horama."""
  import sys
  import types
  import torch
  import torch.nn.functional as F

  def roi_align(image, boxes, output_size):
    # torchvision's roi_align (aligned=False, one sample per bin): bin centres
    # x1 + (i + ½)·(x2 − x1)/out, bilinear, pixel centres at integer coords.
    _, _, h, w = image.shape
    oh, ow = output_size
    t = (torch.arange(oh, dtype=image.dtype) + 0.5) / oh
    s = (torch.arange(ow, dtype=image.dtype) + 0.5) / ow
    crops = []
    for b in boxes:
      idx, x1, y1, x2, y2 = b
      ys = y1 + t * (y2 - y1)
      xs = x1 + s * (x2 - x1)
      gy, gx = torch.meshgrid((2 * ys + 1) / h - 1, (2 * xs + 1) / w - 1, indexing="ij")
      grid = torch.stack([gx, gy], -1)[None]
      crops.append(F.grid_sample(image[int(idx)][None], grid, mode="bilinear",
                                 padding_mode="zeros", align_corners=False))
    return torch.cat(crops)

  def download_url(*args, **kwargs):
    raise RuntimeError("horama_compare: horama must use our spectrum file")

  tv = types.ModuleType("torchvision")
  tv.ops = types.ModuleType("torchvision.ops")
  tv.ops.roi_align = roi_align
  tv.datasets = types.ModuleType("torchvision.datasets")
  tv.datasets.utils = types.ModuleType("torchvision.datasets.utils")
  tv.datasets.utils.download_url = download_url
  for name, module in (("torchvision", tv), ("torchvision.ops", tv.ops),
                       ("torchvision.datasets", tv.datasets),
                       ("torchvision.datasets.utils", tv.datasets.utils)):
    sys.modules.setdefault(name, module)


def horama_render(net, layer, channel, size, steps):
  """horama.maco on the PyTorch GoogLeNet; returns (image [H, W, 3], s/step)."""
  import torch
  from horama import maco_fv
  torch.manual_seed(channel)

  def objective(crops):   # NCHW in values_range (0, 1)
    return net(crops.permute(0, 2, 3, 1), stop=layer)[:, channel].mean()

  times = []
  real_step = maco_fv.optimization_step

  def timed_step(*a, **k):   # horama's loop has no per-step hook: wrap its step
    times.append(time.perf_counter())
    return real_step(*a, **k)
  maco_fv.optimization_step = timed_step
  try:
    image, _ = maco_fv.maco(objective, total_steps=steps, image_size=size,
                            model_input_size=size, values_range=(0.0, 1.0),
                            device="cpu")
  finally:
    maco_fv.optimization_step = real_step
  per_step = (times[-1] - times[0]) / max(len(times) - 1, 1)
  return image.detach().permute(1, 2, 0).numpy(), per_step


def ours_render(model, params, layer, channel, size, steps, lr):
  config = render.RenderConfig(size=size, steps=steps, lr=lr, param="maco",
                               transforms="maco", chunk_size=1)
  make = lambda c: objectives.channel(layer, c)
  run = lambda: jax.block_until_ready(render.render(
      model, params, make, jnp.array([channel]), config, progress=lambda *a: None))
  run()   # compile
  t0 = time.perf_counter()
  result = run()
  return np.asarray(result.images[0]), (time.perf_counter() - t0) / steps


def judge(model, params, layer, channel, image) -> float:
  acts = model.apply(params, jnp.asarray(image)[None], layers=(layer,))[layer]
  return float(acts[..., channel].mean())


def main(argv):
  del argv
  from torch_googlenet import GoogLeNet
  _torchvision_standin()
  model, params = models.load("bvlc_googlenet")
  net = GoogLeNet(weights.load_raw(data_lib.googlenet_dir()))
  layer, size, steps = _LAYER.value, _SIZE.value, _STEPS.value
  workdir = tempfile.mkdtemp(prefix="horama_")
  np.save(os.path.join(workdir, "spectrum_decorrelated.npy"),
          spectrum.default_magnitude(spectrum.ESTIMATE_SIZE))
  os.chdir(workdir)   # horama reads its spectrum from the working directory
  rows = []
  for c in (int(x) for x in _CHANNELS.value):
    systems = [("horama", lambda: horama_render(net, layer, c, size, steps))]
    systems += [(f"atlasjax_lr{lr}", lambda lr=float(lr): ours_render(
        model, params, layer, c, size, steps, lr)) for lr in _LRS.value]
    for system, fn in systems:
      image, per_step = fn()
      rows.append({"workload": "horama_compare", "system": system, "layer": layer,
                   "channel": c, "size": size, "steps": steps,
                   "objective": judge(model, params, layer, c, image),
                   "seconds_per_step": per_step, "machine": machine.describe()})
      print(json.dumps(rows[-1]), flush=True)
  by = lambda s, k: float(np.mean([r[k] for r in rows if r["system"] == s]))
  summary = {"workload": "horama_compare_summary", "layer": layer, "size": size,
             "steps": steps, "mean_objective_horama": by("horama", "objective")}
  for lr in _LRS.value:
    summary[f"mean_objective_atlasjax_lr{lr}"] = by(f"atlasjax_lr{lr}", "objective")
    summary[f"step_time_ratio_horama_over_atlasjax_lr{lr}"] = (
        by("horama", "seconds_per_step") / by(f"atlasjax_lr{lr}", "seconds_per_step"))
  print(json.dumps({**summary, "machine": machine.describe()}), flush=True)


if __name__ == "__main__":
  app.run(main)
