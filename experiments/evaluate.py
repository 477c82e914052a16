r"""Evaluates a model's top-1/top-5 accuracy on a folder of labelled photos.

  python experiments/evaluate.py --images=$ATLASJAX_DATA/imagenet-sample

Prints a final JSON line {"n", "top1", "top5", "images_per_sec"}.
"""

import json

from absl import app
from absl import flags
import numpy as np

import script_setup
from atlasjax import data as data_lib
from atlasjax import evaluation
from atlasjax import images as images_lib
from atlasjax import labels as labels_lib
from atlasjax import models

_IMAGES = flags.DEFINE_string(
    "images", None, "Folder of <wnid>_*.jpg photos (default: the sample photos).")
_MODEL = flags.DEFINE_string("model", models.DEFAULT_MODEL, "Model name.")
_DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
_SAVE_LOGITS = flags.DEFINE_string(
    "save_logits", None, "Write (n, classes) float32 logits here (.npy), "
    "rows in sorted file-name order.")


def main(argv):
  del argv
  script_setup.quiet_logging()
  folder = _IMAGES.value or data_lib.sample_dir(_DATA.value)
  model, params = models.load(_MODEL.value, _DATA.value)
  labels = labels_lib.load(_DATA.value)
  result = evaluation.evaluate(model, params, images_lib.list_images(folder),
                               labels, batch_size=_BATCH_SIZE.value)
  if result.report.skipped:
    print(result.report.summary())
  if _SAVE_LOGITS.value:
    np.save(_SAVE_LOGITS.value, result.logits.astype(np.float32))
  print(json.dumps(result.metrics()))


if __name__ == "__main__":
  app.run(main)
