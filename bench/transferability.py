r"""Transferability (Fel et al. 2023's metric): class visualizations rendered
on one network, classified by another.

  python bench/transferability.py --source=bvlc_googlenet --judge=efficientnet_lite0 \
      --classes=16 --size=128 --steps=64 --params=fft,maco,pixel --out=/tmp/transfer

For each parameterization, ``--classes`` class-logit visualizations (classes
spread evenly over the 1000, the same for every run) are rendered on
``--source`` with equal settings (standard transforms, Adam, ``--steps``), in
one batched render each; every image is resized to the judge's input size and
classified by ``--judge``. Prints one JSON line per parameterization: how often
the target class is the judge's top-1 / top-5, the same on the source itself,
and the mean softmax probability of the target on the judge. ``--out`` gets a
contact sheet per parameterization. The measure itself is
:mod:`atlasjax.quality.transfer`.
"""

import json
import pathlib
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import machine  # bench/ (this script's folder is on sys.path)
from atlasjax import models
from atlasjax import plotting
from atlasjax.classic import synthesis
from atlasjax.optvis import render
from atlasjax.quality import transfer

_SOURCE = flags.DEFINE_string("source", "bvlc_googlenet", "Network rendered on.")
_JUDGE = flags.DEFINE_string("judge", "efficientnet_lite0", "Network that classifies.")
_CLASSES = flags.DEFINE_integer("classes", 16, "Number of classes.")
_SIZE = flags.DEFINE_integer("size", 128, "Render size.")
_STEPS = flags.DEFINE_integer("steps", 64, "Adam steps.")
_PARAMS = flags.DEFINE_list("params", ["fft", "maco", "pixel"], "Parameterizations.")
_TRANSFORMS = flags.DEFINE_string("transforms", "standard", "Transforms preset.")
_LR = flags.DEFINE_float("lr", render.DEFAULT_LR, "Adam learning rate.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed of the renders.")
_OUT = flags.DEFINE_string("out", None, "Folder for contact sheets (optional).")


def main(argv):
  del argv
  source, source_params = models.load(_SOURCE.value)
  judge, judge_params = models.load(_JUDGE.value)
  classes = transfer.class_set(_CLASSES.value)
  out = pathlib.Path(_OUT.value) if _OUT.value else None
  for kind in _PARAMS.value:
    config = render.RenderConfig(size=_SIZE.value, steps=_STEPS.value, lr=_LR.value,
                                 param=kind,
                                 transforms=_TRANSFORMS.value, chunk_size=len(classes))
    t0 = time.perf_counter()
    result = synthesis.render_class_models(source, source_params, classes, config,
                                           jax.random.PRNGKey(_SEED.value))
    images = np.asarray(result.images)[..., :3]
    seconds = time.perf_counter() - t0
    if out is not None:
      out.mkdir(parents=True, exist_ok=True)
      stem = f"{_SOURCE.value}_{kind}_lr{_LR.value:g}"
      np.save(out / f"{stem}.npy", images)
      plotting.save_png(plotting.grid(list(images), ncols=8), out / f"{stem}.png")
    line = {"workload": "transferability", "source": _SOURCE.value,
            "judge": _JUDGE.value, "param": kind, "transforms": _TRANSFORMS.value,
            "classes": len(classes), "size": _SIZE.value, "steps": _STEPS.value,
            "lr": _LR.value}
    for prefix, (net, net_params) in (("judge", (judge, judge_params)),
                                      ("source", (source, source_params))):
      rates = transfer.hit_rates(transfer.judge_logits(net, net_params, images), classes)
      line.update({f"{prefix}_{k}": v for k, v in rates.items()})
    line.update({"render_s": seconds, "machine": machine.describe()})
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
  app.run(main)
