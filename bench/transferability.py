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
contact sheet per parameterization.
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


def class_set(n: int) -> np.ndarray:
  """``n`` class indices spread evenly over ImageNet's 1000."""
  return np.round(np.linspace(0, 999, n + 2)[1:-1]).astype(np.int32)


def judge_logits(model, params, images) -> np.ndarray:
  """``[N, 1000]`` logits of ``images`` resized to ``model.input_size``."""
  s = model.input_size
  x = jax.image.resize(jnp.asarray(images)[..., :3], (len(images), s, s, 3), "linear")
  return np.asarray(model.apply(params, x, layers=("logits",))["logits"])


def hit_rates(logits: np.ndarray, classes: np.ndarray) -> dict:
  ranks = (logits > logits[np.arange(len(classes)), classes][:, None]).sum(1)
  probs = jax.nn.softmax(jnp.asarray(logits), axis=-1)
  return {"top1": float((ranks < 1).mean()), "top5": float((ranks < 5).mean()),
          "target_prob": float(np.asarray(probs)[np.arange(len(classes)), classes].mean())}


def main(argv):
  del argv
  source, source_params = models.load(_SOURCE.value)
  judge, judge_params = models.load(_JUDGE.value)
  classes = class_set(_CLASSES.value)
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
    line.update({f"judge_{k}": v for k, v in
                 hit_rates(judge_logits(judge, judge_params, images), classes).items()})
    line.update({f"source_{k}": v for k, v in
                 hit_rates(judge_logits(source, source_params, images), classes).items()})
    line.update({"render_s": seconds, "machine": machine.describe()})
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
  app.run(main)
