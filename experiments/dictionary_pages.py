r"""Microscope pages for a trained dictionary's features, and atlas labels.

  python experiments/dictionary_pages.py --workdir=W --features=0-63 \
      [--images=DIR] [--out=MICROSCOPE_WORKDIR] [--atlas=ATLAS_WORKDIR]

Reads ``W/dictionary.npz`` and ``W/metrics.json`` (its layer), renders the
chosen features (decoder directions, one batch), finds their top photos by
code, and writes ``OUT/dictionary/<layer>/index.html`` plus one page per
feature whose neuron links point at ``OUT/index.html#/unit/<layer>/<c>`` (a
Microscope built in the same folder). The unit pages of that Microscope link
back: each lists the features whose decoder rows weigh most on it (added to a
site already there, or by the next ``experiments/microscope.py`` run).
``--atlas`` also labels every grid of that atlas by its cells' strongest
features (``grid_<n>/dictionary_labels.json``, and the atlas image with each
cell's strongest feature printed on it, ``atlas_dictionary_labels.jpg``), and
rewrites its viewer (if it has one) so that each cell shows them, linked to
these pages.

Everything is checked before anything is written: the dictionary must have
been trained on the same model and weights (``metrics.json``), and so must
the atlas. The run holds the lock of ``--out`` and of ``--atlas``.
"""

import contextlib
import pathlib
import re

from absl import flags
import jax

import cli
from atlasjax import images as images_lib
from atlasjax import viewer
from atlasjax import workdir as workdir_lib
from atlasjax.classic import examples as examples_lib
from atlasjax.features import objectives as feature_objectives
from atlasjax.features import pipeline
from atlasjax.features import sae
from atlasjax.features import store
from atlasjax.microscope import dictionary as pages
from atlasjax.optvis import render as render_lib

_WORKDIR = flags.DEFINE_string("workdir", None, "Dictionary work directory.", required=True)
_FEATURES = flags.DEFINE_string("features", "0-63", "Features: A-B or a,b,c.")
_IMAGES = flags.DEFINE_string("images", None, "Photos for the examples (default: the sample photos).")
_OUT = flags.DEFINE_string("out", None, "Microscope work directory (default: --workdir).")
_ATLAS = flags.DEFINE_string("atlas", None, "Atlas work directory to label.")
_SIZE = flags.DEFINE_integer("size", 96, "Render side.")
_STEPS = flags.DEFINE_integer("steps", 256, "Render steps.")
_EXAMPLES = flags.DEFINE_integer("examples", pages.DEFAULT_EXAMPLES, "Top photos per feature.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_CROP = flags.DEFINE_integer("crop", None, "Side of the example crops in input "
                             "pixels (default: the layer's effective receptive field).")


def parse_features(text: str, count: int) -> list[int]:
  out = []
  for part in text.split(","):
    m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
    if not m:
      raise ValueError(f"--features={text}: write 0-63 or 3,17,40.")
    out += range(int(m[1]), int(m[2] or m[1]) + 1)
  bad = [f for f in out if f >= count]
  if bad:
    raise ValueError(f"--features={text}: {bad[:5]} outside 0..{count - 1}.")
  return out


def main(argv):
  del argv
  model, params = cli.load_model()
  d = sae.load(f"{_WORKDIR.value}/{pipeline.DICTIONARY_FILE}")
  trained_on = pipeline.check_trained_on(_WORKDIR.value, model, params)
  layer = trained_on["layer"]
  features = parse_features(_FEATURES.value, d.features)
  paths = workdir_lib.utf8_names(
      images_lib.list_images(cli.image_folder(_IMAGES.value)), "dictionary_pages")
  if _ATLAS.value:
    pages.check_atlas(_ATLAS.value, d, layer, trained_on)
  out = cli.output_dir(_OUT.value or _WORKDIR.value)
  with contextlib.ExitStack() as held:
    for folder in filter(None, (out, _ATLAS.value)):
      held.enter_context(workdir_lib.lock(folder))
    write(model, params, d, layer, features, paths, out, trained_on)


def write(model, params, d, layer, features, paths, out, trained_on) -> None:
  """Renders the features, writes their pages and labels the atlas."""
  config = render_lib.RenderConfig(size=_SIZE.value, steps=_STEPS.value)
  renders = feature_objectives.render_features(
      model, params, d, layer, features, config=config,
      key=jax.random.PRNGKey(_SEED.value)).images
  found = pages.top_examples(d, model, params, paths, layer, _EXAMPLES.value)
  crop = _CROP.value or examples_lib.receptive_field_size(
      model, params, layer, jax.random.PRNGKey(_SEED.value), mass=0.9)
  index = pages.write_pages(out, layer, d, jax.device_get(renders), found, crop,
                            model.input_size, features=features)
  print(f"wrote {len(features)} feature pages: {index}")
  if _ATLAS.value:
    for path in pages.label_atlas(_ATLAS.value, d, layer, pages=index.parent,
                                  trained_on=trained_on):
      size = store.load_json(path)["size"]
      print(f"wrote {path} and {pages.draw_labels(_ATLAS.value, size, layer)}")
    if (pathlib.Path(_ATLAS.value) / "index.html").is_file():   # a viewer is there
      print(f"wrote {viewer.write_viewer(_ATLAS.value)} (cells show their features)")


if __name__ == "__main__":
  cli.run(main)
