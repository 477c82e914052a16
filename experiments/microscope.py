r"""Builds an offline, Microscope-style site for every unit of some layers.

  python experiments/microscope.py                      # mixed3a, 64 px, 64 steps
  python experiments/microscope.py --layers=mixed3a,mixed3b --images=DIR

Renders every channel of --layers (batched, in resumable chunks of
--chunk_size), collects the top dataset examples of those layers and their
neighbouring layers from --images in one streaming pass, computes the expanded
weights between adjacent layers, and writes WORKDIR/index.html: a grid per
layer, a page per unit with its strongest inputs and outputs as links. Open it
from disk; nothing is requested from outside the folder. Rerunning resumes.

The default (one layer, 64 px, 64 steps, the 800 sample photos) is sized for
a 2-core CPU (see bench/RESULTS.md). The full model on a GPU:

  python experiments/microscope.py --workdir=workdir/microscope_full \
      --layers=conv2d0,conv2d1,conv2d2,mixed3a,mixed3b,mixed4a,mixed4b,mixed4c,mixed4d,mixed4e,mixed5a,mixed5b \
      --size=128 --steps=512 --chunk_size=256 --diversity=4 --images=/data/imagenet/val
"""

import json

from absl import flags

import cli
from atlasjax import images as images_lib
from atlasjax import microscope
from atlasjax.microscope import quality as quality_scores

_DEFAULTS = microscope.MicroscopeConfig()

_LAYERS = flags.DEFINE_list("layers", list(_DEFAULTS.layers),
                            "Unit layers whose every channel is rendered.")
_SIZE = flags.DEFINE_integer("size", _DEFAULTS.size, "Render side in pixels.")
_STEPS = flags.DEFINE_integer("steps", _DEFAULTS.steps, "Optimisation steps.")
_CHUNK = flags.DEFINE_integer("chunk_size", _DEFAULTS.chunk_size,
                              "Channels per render call and per saved chunk.")
_TRANSFORMS = cli.define_transforms(_DEFAULTS.transforms,
                                    "Transforms of the renders")
_PARAM = cli.define_param(_DEFAULTS.param, "Parameterization of the renders")
_OBJECTIVE = flags.DEFINE_string(
    "objective", _DEFAULTS.objective, "Unit objective: channel, or a name "
    "registered with atlasjax.optvis.registry.register_objective, or "
    "'package.module:factory' (factory(layer) -> family channel -> Objective).")
_DIVERSITY = flags.DEFINE_integer("diversity", _DEFAULTS.diversity,
                                  "Diverse renders per unit (0: none).")
_EXAMPLES = flags.DEFINE_integer("examples", _DEFAULTS.examples,
                                 "Dataset examples per unit.")
_LINKS = flags.DEFINE_integer("links", _DEFAULTS.links,
                              "Strongest inputs/outputs listed per sign.")
_SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed, "Render PRNG seed.")
_IMAGES = flags.DEFINE_string("images", None,
                              "Photo folder (default: the sample photos).")
_LIMIT = flags.DEFINE_integer("limit", None, "Use only the first N photos.")
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Work directory (default: workdir/microscope_<layers>).")
_QUALITY = flags.DEFINE_string("quality", None, "A quality.json of "
                               "experiments/quality.py: its per-unit scores go on "
                               "the unit pages (and the layer pages sort by them).")


def main(argv):
  del argv
  model, params = cli.load_model()
  config = microscope.MicroscopeConfig(
      layers=tuple(_LAYERS.value), size=cli.check_size(model, _SIZE.value, "--size"),
      steps=_STEPS.value, chunk_size=_CHUNK.value, transforms=_TRANSFORMS.value,
      param=_PARAM.value, objective=_OBJECTIVE.value,
      diversity=_DIVERSITY.value, examples=_EXAMPLES.value, links=_LINKS.value,
      seed=_SEED.value)
  microscope.site_layers(model, config.layers)   # bad --layers: one line, now
  microscope.check_renders(model, config, params)   # and --param, --transforms, --objective
  folder = cli.image_folder(_IMAGES.value)
  paths = images_lib.list_images(folder)
  paths = paths[:_LIMIT.value] if _LIMIT.value else paths
  workdir = cli.output_dir(_WORKDIR.value or "workdir/microscope_"
                           + "_".join(config.layers), "--workdir")
  quality = cli_quality_file(_QUALITY.value)
  summary = microscope.build(model, params, config, workdir, paths,
                             image_root=folder)
  if quality is not None:
    summary["quality_layers"] = quality_scores.add_quality_scores(workdir, quality)
  print(json.dumps({"index": summary["index"],
                    "site_layers": summary["site_layers"],
                    "render_seconds": {l: round(s["seconds"], 1)
                                       for l, s in summary["renders"].items()},
                    "quality_layers": summary.get("quality_layers", [])}))


def cli_quality_file(path):
  """``--quality``, checked to be a readable quality.json before any work."""
  if path is None:
    return None
  try:
    result = json.loads(open(path, encoding="utf-8").read())
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"--quality={path} is not a readable quality.json ({e}); "
                     "pass the file experiments/quality.py wrote.") from None
  if not isinstance(result, dict) or "params" not in result:
    raise ValueError(f"--quality={path} has no 'params'; pass the quality.json "
                     "experiments/quality.py wrote.")
  return result


if __name__ == "__main__":
  cli.run(main)
