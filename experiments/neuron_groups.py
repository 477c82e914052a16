r"""Neuron groups of one photo (Building Blocks): NMF or a trained dictionary.

  python experiments/neuron_groups.py --image=photo.jpg --layer=mixed4d \
      --groups=6 --out=/tmp/groups [--attribution=Labrador_retriever] \
      [--dictionary=W/dictionary.npz]

Factorizes the photo's ``[H·W, C]`` activations into ``--groups`` non-negative
groups (or takes the dictionary's most active features), renders every group's
channel vector in one batch, and writes ``groups.npz`` (``image``,
``activations``, ``spatial``, ``channels``, ``layer``, ``method``) and
``groups.png`` (the photo, each group's map in its own colour, each render).
"""

from absl import flags
import jax

import cli
from atlasjax import labels as labels_lib
from atlasjax.features import groups as groups_lib
from atlasjax.features import sae
from atlasjax.optvis import render as render_lib

_IMAGE = flags.DEFINE_string("image", None, "Photo to factorize.", required=True)
_LAYER = flags.DEFINE_string("layer", None, "Spatial layer (default: the model's).")
_GROUPS = flags.DEFINE_integer("groups", 6, "Number of neuron groups.")
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_ATTRIBUTION = flags.DEFINE_string(
    "attribution", None, "Weight channels by attribution to this class (name, "
    "WordNet id or index) before factorizing.")
_DICTIONARY = flags.DEFINE_string(
    "dictionary", None, "dictionary.npz to take groups from instead of NMF.")
_SIZE = flags.DEFINE_integer("size", groups_lib.DEFAULT_RENDER.size,
                             "Side of each group's render.")
_STEPS = flags.DEFINE_integer("steps", groups_lib.DEFAULT_RENDER.steps,
                              "Render steps.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed of the renders.")


def main(argv):
  del argv
  model, params = cli.load_model()
  layer = cli.spatial_layer(model, _LAYER.value)
  photo = cli.image_file(_IMAGE.value)
  cli.check_size(model, _SIZE.value, "--size")
  if _GROUPS.value < 1:
    raise ValueError(f"--groups={_GROUPS.value}: pass 1 or more.")
  if _DICTIONARY.value and _ATTRIBUTION.value:
    raise ValueError("--attribution weights NMF; it does not apply with "
                     "--dictionary. Pass one of them.")
  label = (labels_lib.load(cli.DATA.value).lookup(_ATTRIBUTION.value)
           if _ATTRIBUTION.value else None)
  dictionary = sae.load(_DICTIONARY.value) if _DICTIONARY.value else None
  if dictionary is not None:
    sae.check_fits(dictionary, model, layer)
  out = cli.output_dir(_OUT.value)
  image = groups_lib.load_photo(photo, model)
  if dictionary is not None:
    groups = groups_lib.from_dictionary(dictionary, model, params, image, layer,
                                        _GROUPS.value)
  else:
    groups = groups_lib.neuron_groups(model, params, image, layer,
                                      _GROUPS.value, label=label)
  config = render_lib.RenderConfig(size=_SIZE.value, steps=_STEPS.value)
  renders = groups_lib.render_groups(model, params, groups, config,
                                     jax.random.PRNGKey(_SEED.value))
  path = groups_lib.save(groups, out, groups_lib.figure(groups, renders))
  print(f"{groups.n} {groups.method} groups of {layer}: wrote {path} and "
        f"{out / 'groups.png'}")


if __name__ == "__main__":
  cli.run(main)
