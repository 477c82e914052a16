r"""One dictionary setting on every mixed layer: R², L0, dead fraction.

  nice -n 5 python bench/sae_layers.py --photos=100 --workdir=/tmp/sae_layers

For each layer of ``--layers`` it runs :func:`atlasjax.features.pipeline.run`
(all positions of ``--photos`` sample photos at 224 px, one in ten held out;
TopK SAE with ``--features``, ``--k``, ``--epochs``) and prints one JSON line
with the held-out metrics, the training speed, the machine and its 1-minute
load average. Work directories are kept (``--workdir/<layer>``), so a rerun
resumes and the dictionaries can be rendered afterwards.

``--vectors=N`` gives every layer the same training budget instead of the
same epochs: each layer trains ``round(N / its training vectors)`` epochs
(mixed4 layers have a 4× smaller grid than mixed3, so 4× the epochs).
"""

import json
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(__file__))
import machine  # noqa: E402

from atlasjax import data as data_lib  # noqa: E402
from atlasjax import models  # noqa: E402
from atlasjax.features import pipeline  # noqa: E402
from atlasjax.features import train as train_lib  # noqa: E402

MIXED = ("mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e")
_LAYERS = flags.DEFINE_list("layers", list(MIXED), "Layers.")
_PHOTOS = flags.DEFINE_integer("photos", 100, "Sample photos used.")
_FEATURES = flags.DEFINE_integer("features", 2048, "Dictionary size F.")
_K = flags.DEFINE_integer("k", 32, "Active features per vector.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Epochs (unless --vectors).")
_VECTORS = flags.DEFINE_integer("vectors", None, "Training vectors per layer "
                                "(sets each layer's epochs; default: --epochs).")
_BATCH = flags.DEFINE_integer("batch_size", 4096, "Vectors per step.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/sae_layers", "Work directories.")
_DATA = flags.DEFINE_string("data", None, "Data root.")


def main(argv):
  del argv
  model, params = models.load(models.DEFAULT_MODEL, _DATA.value)
  images = data_lib.sample_dir(_DATA.value)
  for layer in _LAYERS.value:
    epochs = _EPOCHS.value
    if _VECTORS.value:
      side = model.input_size // model.layer(layer).stride
      train_photos = len(pipeline.split(list(range(_PHOTOS.value)),
                                        pipeline.DEFAULT_HELDOUT_EVERY)[0])
      epochs = max(1, round(_VECTORS.value / (train_photos * side * side)))
    config = pipeline.DictionaryConfig(
        layer, train=train_lib.TrainConfig(
            features=_FEATURES.value, k=_K.value, epochs=epochs,
            batch_size=_BATCH.value, checkpoint_every=0),
        max_photos=_PHOTOS.value)
    t0 = time.perf_counter()
    m = pipeline.run(config, model, params, images,
                     os.path.join(_WORKDIR.value, layer))
    print(json.dumps({
        "workload": "sae_layers", "layer": layer, "photos": _PHOTOS.value,
        "features": _FEATURES.value, "k": _K.value, "epochs": epochs,
        "batch_size": _BATCH.value, "steps": m["steps"],
        "train_vectors": m["train_vectors"], "heldout_vectors": m["heldout_vectors"],
        "r2": m["r2"], "mean_l0": m["mean_l0"], "dead_fraction": m["dead_fraction"],
        "never_active_fraction": m["never_active_fraction"],
        "vectors_per_s": m["training_vectors_per_s"],
        "wall_s": time.perf_counter() - t0, "machine": machine.describe()}),
          flush=True)


if __name__ == "__main__":
  app.run(main)
