r"""How good are a model's visualizations? The quality suite, per unit.

  python experiments/quality.py --model=bvlc_googlenet --layer=mixed4a \
      --units=0-31 --params=fft,maco,pixel [--judge=efficientnet_lite0] \
      [--photos=DIR] --out=DIR

For every unit (a channel of each ``--layer``) and every parameterization
(built-in, registered with ``atlasjax.optvis.registry`` or
``package.module:factory``): machine psychophysics in Borowski et al.'s 2AFC
design with synthetic references (visualizations of the unit and of its
negation) and natural references (top / bottom photos of the reference half
of ``--photos``), judged by ``--judge`` (default: a network independent of
``--model``); the path sanity check; the activation reached vs the best
photo. Writes ``quality.json``, ``quality.md``, ``quality.png`` and the trial
images under ``trials/`` (see ``docs/methods/quality.md``). Rerunning with the
same flags resumes; other settings are refused.
"""

from absl import flags
import jax

import cli
from atlasjax import images as images_lib
from atlasjax import models
from atlasjax.optvis import render
from atlasjax.quality import psychophysics
from atlasjax.quality import run as run_lib
from atlasjax.quality import suite as suite_lib

_LAYER = flags.DEFINE_list("layer", None, "Layer(s), comma-separated "
                           "(default: the model's default layer).")
_UNITS = flags.DEFINE_string("units", "0-31", "Channels: a list and/or ranges, "
                             "e.g. 0-31 or 0,5,10-12.")
_PARAMS = flags.DEFINE_list("params", ["fft", "maco", "pixel"],
                            "Parameterizations (built-in, registered or module:factory).")
_JUDGE = flags.DEFINE_string("judge", None, "Judge network (default: "
                             "efficientnet_lite0, or bvlc_googlenet for it).")
_PHOTOS = flags.DEFINE_string("photos", None, "Folder of photos (default: the "
                              "sample photos).")
_OUT = flags.DEFINE_string("out", None, "Output folder (resumable).", required=True)
_SIZE = flags.DEFINE_integer("size", 128, "Render side in pixels.")
_STEPS = flags.DEFINE_integer("steps", 256, "Adam steps per render.")
_LR = flags.DEFINE_float("lr", render.DEFAULT_LR, "Adam learning rate.")
_TRANSFORMS = flags.DEFINE_string("transforms", "standard", "Transforms preset.")
_REFERENCES = flags.DEFINE_integer("references", psychophysics.DEFAULT_REFERENCES,
                                   "References per side.")
_TRIALS = flags.DEFINE_integer("trials", 10, "Query pairs per unit.")
_BATCH = flags.DEFINE_integer("batch_units", 4, "Units per batched render.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the renders, the photo split "
                             "and the bootstrap.")


def parse_units(text: str) -> tuple[int, ...]:
  """``"0-3,8"`` -> ``(0, 1, 2, 3, 8)`` (order kept, duplicates dropped)."""
  units = []
  for part in filter(None, (p.strip() for p in text.split(","))):
    lo, dash, hi = part.partition("-")
    if not (lo.isdigit() and (not dash or hi.isdigit())):
      raise ValueError(f"--units={text}: {part!r} is not a number or a range "
                       "A-B; write e.g. --units=0-31 or --units=0,5,10-12.")
    units += range(int(lo), int(hi if dash else lo) + 1)
  if not units:
    raise ValueError("--units is empty; name at least one channel, e.g. --units=0-31.")
  return tuple(dict.fromkeys(units))


def photo_folder(path):
  """``--photos`` (or the sample photos), checked to hold photos."""
  try:
    return cli.image_folder(path)
  except ValueError as e:
    raise ValueError(str(e).replace("--images", "--photos")) from None


def main(argv):
  del argv
  model = cli.get_model()
  judge_name = _JUDGE.value or psychophysics.default_judge(model.name)
  spec = run_lib.RunSpec(
      model=model.name, judge=judge_name,
      layers=tuple(_LAYER.value or (cli.layer_or_default(model, None),)),
      units=parse_units(_UNITS.value), params=tuple(_PARAMS.value),
      size=cli.check_size(model, _SIZE.value, "--size"), steps=_STEPS.value,
      lr=_LR.value, transforms=_TRANSFORMS.value, batch_units=_BATCH.value,
      suite=suite_lib.SuiteConfig(references=_REFERENCES.value, trials=_TRIALS.value,
                                  seed=_SEED.value))
  photos = images_lib.list_images(photo_folder(_PHOTOS.value))
  out = cli.output_dir(_OUT.value)
  judge = models.get(judge_name)
  run_lib.check(spec, model, judge, photos)   # before loading weights
  model, params = cli.load_model()
  _, judge_params = models.load(judge_name, cli.DATA.value)
  result = run_lib.run(spec, model, params, judge, judge_params, photos, out,
                       jax.random.PRNGKey(_SEED.value))
  for name, block in result["params"].items():
    s = block["summary"]
    print(f"quality: {name}: synthetic {s['synthetic']:.3f} {s['synthetic_ci95']}, "
          f"natural {s['natural']:.3f} {s['natural_ci95']}, path {s['path_check']} "
          f"({s['units']} units, judge {result['judge']})")
  print(f"quality: wrote {out / 'quality.json'}")


if __name__ == "__main__":
  cli.run(main)
