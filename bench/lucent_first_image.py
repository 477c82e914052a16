r"""Dev-only: Lucent 0.1.8's first saved image of one channel, for
``bench/first_image.py`` (run with a Python that has torch and torch-lucent).

  /path/to/torch-venv/bin/python bench/lucent_first_image.py --out=/tmp/l.png

``render.render_vis(model, "mixed4a:97")`` at Lucent's defaults (128 px FFT
image upsampled to 224, the standard transforms, Adam 0.05, 512 steps), saving
the image (``save_image=True``; ``show_image=False`` because no screen).

InceptionV1 has **random weights** (``pretrained=False``): Lucent downloads its
weights at run time and this machine reaches no website. The compute per step
is the same as with the trained weights.

torchvision: Lucent imports it only for ``transforms.Normalize`` (used for
torchvision models, not InceptionV1, which takes Lucid's ``x * 255 - 117``)
and the ``torchvision.models`` re-export of its model zoo. The torchvision
wheels of the registry do not import beside the local torch CPU wheel, so this
script puts two empty stand-in modules in ``sys.modules`` before importing
Lucent; nothing of them runs on the InceptionV1 path. kornia 0.4.1 (Lucent's
pin) supplies the jitter and rotation.

Prints one JSON line: seconds from the process's start (``--spawned_at``, the
parent's clock; else this interpreter's start) to the saved image, and stages.
"""

import argparse
import json
import sys
import time
import types

STARTED = time.time()


def _stand_in_torchvision() -> None:
  tv = types.ModuleType("torchvision")
  tv_transforms = types.ModuleType("torchvision.transforms")
  tv_models = types.ModuleType("torchvision.models")

  class Normalize:  # pylint: disable=too-few-public-methods
    def __init__(self, *args, **kwargs):
      raise RuntimeError("torchvision stand-in: Normalize is not on the "
                         "InceptionV1 path")

  tv_transforms.Normalize = Normalize
  tv_models.__all__ = []
  tv.transforms, tv.models = tv_transforms, tv_models
  sys.modules.update({"torchvision": tv, "torchvision.transforms": tv_transforms,
                      "torchvision.models": tv_models})


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", required=True)
  parser.add_argument("--objective", default="mixed4a:97")
  parser.add_argument("--steps", type=int, default=0, help="0: Lucent's default")
  parser.add_argument("--spawned_at", type=float, default=0.0)
  flags = parser.parse_args()
  _stand_in_torchvision()
  import torch  # pylint: disable=g-import-not-at-top
  from lucent.modelzoo import inceptionv1  # pylint: disable=g-import-not-at-top
  from lucent.optvis import render  # pylint: disable=g-import-not-at-top
  imported = time.time()
  torch.manual_seed(0)
  model = inceptionv1(pretrained=False).eval()
  loaded = time.time()
  kwargs = {"thresholds": (flags.steps,)} if flags.steps else {}
  render.render_vis(model, flags.objective, show_image=False, save_image=True,
                    image_name=flags.out, **kwargs)
  saved = time.time()
  start = flags.spawned_at or STARTED
  print(json.dumps({
      "tool": "lucent", "version": "0.1.8", "torch": torch.__version__,
      "threads": torch.get_num_threads(), "weights": "random (same compute)",
      "seconds_to_image": round(saved - start, 2),
      "stages": {"start_and_import": round(imported - start, 2),
                 "model": round(loaded - imported, 2),
                 "render_and_save": round(saved - loaded, 2)}}))


if __name__ == "__main__":
  main()
