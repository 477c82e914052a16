r"""Class model visualization (Simonyan et al., 2014), several classes at once.

  python experiments/class_model.py --classes=goldfish,wok --size=128 \
      --steps=256 --out=/tmp/class_model

Gradient ascent on each class's logit (minus optional L2 / total-variation
penalties on the image) with the batched renderer: all classes are one
program. Writes class_<name>.png per class, class_models.png (a captioned
sheet) and class_models.json with each class's final logit and its logit on a
random initial image. ``--param=pixel --transforms=none --nodecorrelate
--l2_weight=...`` is close to the original recipe; the defaults (FFT
parameterization, decorrelated colour, standard transforms) give cleaner
images.
"""

import json
import re

from absl import flags
import jax
import numpy as np

import cli
from atlasjax import labels as labels_lib
from atlasjax import plotting
from atlasjax.classic import synthesis
from atlasjax.optvis import render as render_lib

_CLASSES = flags.DEFINE_list("classes", ["goldfish", "wok"],
                             "Class names, WordNet ids or indices.")
_SIZE = flags.DEFINE_integer("size", 128, "Image side in pixels.")
_STEPS = flags.DEFINE_integer("steps", 256, "Optimisation steps.")
_LR = flags.DEFINE_float("lr", render_lib.DEFAULT_LR, "Adam learning rate.")
_PARAM = cli.define_param("fft")
_DECORRELATE = flags.DEFINE_boolean("decorrelate", True, "Decorrelate colours.")
_TRANSFORMS = cli.define_transforms("standard")
_L2 = flags.DEFINE_float("l2_weight", 0.0, "Weight of the L2 penalty (about grey).")
_TV = flags.DEFINE_float("tv_weight", 0.0, "Weight of the total-variation penalty.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)


def main(argv):
  del argv
  cli.check_pieces(param=_PARAM.value, transforms=_TRANSFORMS.value)
  model, params = cli.load_model()
  labels = labels_lib.load(cli.DATA.value)
  classes = [labels.lookup(c.strip()) for c in _CLASSES.value]
  names = [labels.short_name(c) for c in classes]
  out = cli.output_dir(_OUT.value)
  config = render_lib.RenderConfig(
      size=_SIZE.value, steps=_STEPS.value, lr=_LR.value, param=_PARAM.value,
      decorrelate=_DECORRELATE.value, transforms=_TRANSFORMS.value)
  objective = synthesis.ClassModelObjective(l2_weight=_L2.value,
                                            tv_weight=_TV.value)
  key = jax.random.PRNGKey(_SEED.value)
  result = synthesis.render_class_models(model, params, classes, config, key,
                                         objective)
  images = np.asarray(result.images)[..., :3]
  image_param = config.image_param()
  start = np.concatenate([np.asarray(image_param.to_rgb(image_param.init(k)))
                          for k in jax.random.split(key, len(classes))])
  final = synthesis.class_logits(model, params, images, classes)
  initial = synthesis.class_logits(model, params, start[..., :3], classes)
  records = []
  for c, name, image, f, i in zip(classes, names, images, final, initial):
    file = f"class_{re.sub(r'[^A-Za-z0-9_-]+', '_', name)}.png"
    plotting.save_png(image, out / file)
    records.append({"class": int(c), "name": name, "file": file,
                    "logit": float(f), "random_init_logit": float(i)})
    print(f"{name} ({c}): logit {f:.2f} (random initial image: {i:.2f})")
  plotting.save_contact_sheet(
      list(images), out / "class_models.png",
      titles=[f"{r['name']}: {r['logit']:.1f}" for r in records],
      ncols=min(len(records), 6), suptitle="class model visualization")
  (out / "class_models.json").write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
  cli.run(main)
