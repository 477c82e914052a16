r"""Trains a sparse dictionary (TopK SAE) on every position of a layer.

  python experiments/dictionary.py --images=DIR --layer=mixed3b --features=2048 \
      --k=32 --epochs=4 --workdir=W [--batch_topk] [--stability_seed=1]

Collects all positions of ``--layer`` (one photo in ``--heldout_every`` held
out), trains with Adam, checkpoints with orbax, and writes ``W/dictionary.npz``
(``encoder``, ``encoder_bias``, ``decoder``, ``decoder_bias``, ``k``,
``input_scale``) and ``W/metrics.json`` (held-out R², mean L0, dead fraction,
training vectors/s). Rerunning resumes. ``--stability_seed`` trains a second
dictionary from that seed and writes ``W/stability.json`` (features matched by
the Hungarian algorithm on decoder cosine).
"""

from absl import flags

import cli
from atlasjax.features import pipeline
from atlasjax.features import train as train_lib

_DEFAULTS = train_lib.TrainConfig()
_IMAGES = flags.DEFINE_string("images", None, "Photo folder (default: the sample photos).")
_LAYER = flags.DEFINE_string("layer", None, "Spatial layer (default: the model's).")
_FEATURES = flags.DEFINE_integer("features", _DEFAULTS.features, "Dictionary size F.")
_K = flags.DEFINE_integer("k", _DEFAULTS.k, "Active features per vector.")
_EPOCHS = flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Passes over the data.")
_BATCH = flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Vectors per step.")
_LR = flags.DEFINE_float("lr", _DEFAULTS.lr, "Adam learning rate.")
_BATCH_TOPK = flags.DEFINE_boolean("batch_topk", _DEFAULTS.batch_topk,
                                   "Train with BatchTopK.")
_DEAD_AFTER = flags.DEFINE_integer("dead_after", _DEFAULTS.dead_after,
                                   "Vectors without firing after which a feature is dead.")
_SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of the dictionary and batch order.")
_STABILITY = flags.DEFINE_integer("stability_seed", None,
                                  "Also train this seed and match the two dictionaries.")
_MAX_PHOTOS = flags.DEFINE_integer("max_photos", None, "Use at most this many photos.")
_HELDOUT = flags.DEFINE_integer("heldout_every", pipeline.DEFAULT_HELDOUT_EVERY,
                                "Hold out one photo in this many.")
_SIZE = flags.DEFINE_integer("size", None, "Input side (default: the model's).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.", required=True)


def _config(model) -> pipeline.DictionaryConfig:
  for name, value, low in (("--features", _FEATURES.value, 1), ("--k", _K.value, 1),
                           ("--epochs", _EPOCHS.value, 1),
                           ("--batch_size", _BATCH.value, 1),
                           ("--dead_after", _DEAD_AFTER.value, 1)):
    if value < low:
      raise ValueError(f"{name}={value}: pass {low} or more.")
  if not _LR.value > 0:
    raise ValueError(f"--lr={_LR.value}: pass a positive learning rate.")
  if _K.value > _FEATURES.value:
    raise ValueError(f"--k={_K.value} exceeds --features={_FEATURES.value}; "
                     "k must be at most the dictionary size.")
  size = cli.check_size(model, _SIZE.value, "--size") if _SIZE.value else None
  train = train_lib.TrainConfig(
      features=_FEATURES.value, k=_K.value, epochs=_EPOCHS.value,
      batch_size=_BATCH.value, lr=_LR.value, batch_topk=_BATCH_TOPK.value,
      dead_after=_DEAD_AFTER.value, seed=_SEED.value)
  return pipeline.DictionaryConfig(
      layer=cli.spatial_layer(model, _LAYER.value), train=train, size=size,
      heldout_every=_HELDOUT.value, max_photos=_MAX_PHOTOS.value)


def main(argv):
  del argv
  model, params = cli.load_model()
  config = _config(model)
  images = cli.image_folder(_IMAGES.value)
  workdir = cli.output_dir(_WORKDIR.value, "--workdir")
  metrics = pipeline.run(config, model, params, images, workdir)
  print(f"{config.layer}: R² {metrics['r2']:.4f}, mean L0 "
        f"{metrics['mean_l0']:.2f}, dead {metrics['dead_fraction']:.3f}, "
        f"{metrics['training_vectors_per_s'] or 0:.0f} vectors/s; wrote "
        f"{workdir / pipeline.DICTIONARY_FILE}")
  if _STABILITY.value is not None:
    matched = pipeline.stability(config, workdir, _STABILITY.value)
    print(f"seeds {matched['seeds']}: mean matched decoder cosine "
          f"{matched['mean_cosine']:.3f}; wrote {workdir / pipeline.STABILITY_FILE}")


if __name__ == "__main__":
  cli.run(main)
