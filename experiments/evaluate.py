r"""Evaluates a model's top-1/top-5 accuracy on a folder of labelled photos.

  python experiments/evaluate.py --images=$ATLASJAX_DATA/imagenet-sample
  python experiments/evaluate.py --model=efficientnet_lite0 --images=DIR

Each model gets the standard centre crop at its own input size (shorter side
to round(input_size·256/224), centre input_size). Prints a final JSON line
{"n", "top1", "top5", "images_per_sec", "skipped"}.
"""

import json
import pathlib

from absl import flags
import numpy as np

import cli
from atlasjax import evaluation
from atlasjax import images as images_lib
from atlasjax import labels as labels_lib
from atlasjax import workdir as workdir_lib

_IMAGES = flags.DEFINE_string(
    "images", None, "Folder of <wnid>_*.jpg photos (default: the sample photos).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
_SAVE_LOGITS = flags.DEFINE_string(
    "save_logits", None, "Write (n, classes) float32 logits here (.npy), "
    "rows in sorted file-name order.")


def main(argv):
  del argv
  folder = cli.image_folder(_IMAGES.value)
  if _SAVE_LOGITS.value:
    cli.output_dir(pathlib.Path(_SAVE_LOGITS.value).parent or ".",
                   "--save_logits folder")
  model, params = cli.load_model()
  labels = labels_lib.load(cli.DATA.value)
  result = evaluation.evaluate(model, params, images_lib.list_images(folder),
                               labels, batch_size=_BATCH_SIZE.value)
  if result.report.skipped:
    print(result.report.summary())
  if _SAVE_LOGITS.value:
    path = _SAVE_LOGITS.value   # np.save's naming: ".npy" added when missing
    path = path if path.endswith(".npy") else path + ".npy"
    workdir_lib.save_npy(path, result.logits.astype(np.float32))
  print(json.dumps(result.metrics()))


if __name__ == "__main__":
  cli.run(main)
