r"""Patch attack: paste a patch at each corner and several widths, count flips.

  python experiments/patch_attack.py \
      --patch=$ATLASJAX_DATA/imagenet-sample/n01443537_goldfish.jpg \
      --patch_box=0.07,0.15,0.8,0.85 --target=goldfish \
      --images=$ATLASJAX_DATA/imagenet-sample --limit=64 --out=/tmp/patch

Writes patch_attack.json (per width, per corner: success rate of reaching the
target, rate of leaving the true class, mean target probability, for the patch
and for a seeded noise patch of the same size) and patch_attack.png (those
rates vs patch width) plus examples.png (the patch at each width, and the
control, on the first image).
"""

import functools
import json
import os

from absl import flags
import jax
import numpy as np

import cli
from atlasjax import evaluation
from atlasjax import images as images_lib
from atlasjax import labels as labels_lib
from atlasjax import patch_attack
from atlasjax import plotting

_PATCH = flags.DEFINE_string("patch", None, "Patch image (photo or icon PNG).",
                             required=True)
_PATCH_BOX = flags.DEFINE_list(
    "patch_box", None, "Crop of the patch image: left,top,right,bottom "
    "(fractions if all <= 1, else pixels).")
_TARGET = flags.DEFINE_string("target", None, "Target class (name, wnid, index).",
                              required=True)
_IMAGES = flags.DEFINE_string(
    "images", None, "Folder of photos (default: the sample photos).")
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_WIDTHS = flags.DEFINE_list(
    "widths", [str(w) for w in patch_attack.DEFAULT_WIDTHS],
    "Patch widths as fractions of the image width.")
_SWEEP = flags.DEFINE_integer(
    "sweep", 8, "Add this many evenly spaced widths in [0.1, 0.8] (0: none).")
_CORNERS = flags.DEFINE_list("corners", list(patch_attack.CORNERS), "Corners.")
_MARGIN = flags.DEFINE_integer("margin", 0, "Gap to the image edge (pixels).")
_LIMIT = flags.DEFINE_integer("limit", None, "Use only N images (evenly spaced).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the noise control patches.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", patch_attack.DEFAULT_BATCH_SIZE,
                                   "Images per forward pass.")


def _references(paths, labels):
  refs = []
  for path in paths:
    try:
      refs.append(evaluation.label_of(path, labels))
    except ValueError:
      refs.append(None)  # unlabelled: the clean top-1 is the reference
  return refs


def main(argv):
  del argv
  model, params = cli.load_model()
  labels = labels_lib.load(cli.DATA.value)
  paths = images_lib.list_images(cli.image_folder(_IMAGES.value))
  out_dir = cli.output_dir(_OUT.value)
  load = functools.partial(images_lib.load_for_model,
                           input_size=model.input_size)
  if _LIMIT.value and _LIMIT.value < len(paths):
    paths = [paths[i] for i in
             np.linspace(0, len(paths) - 1, _LIMIT.value).round().astype(int)]
  box = [float(v) for v in _PATCH_BOX.value] if _PATCH_BOX.value else None
  patch = patch_attack.load_patch(_PATCH.value, box)
  base = tuple(float(w) for w in _WIDTHS.value)
  config = patch_attack.PatchAttackConfig(
      target=labels.lookup(_TARGET.value),
      widths=patch_attack.sweep_widths(base, _SWEEP.value),
      corners=tuple(_CORNERS.value), margin=_MARGIN.value, seed=_SEED.value,
      batch_size=_BATCH_SIZE.value)
  result = patch_attack.run(model, params, paths, patch, config,
                            _references(paths, labels), load=load)
  summary = patch_attack.summarize(result)
  summary.update(patch_file=_PATCH.value, patch_box=box,
                 target_name=labels.short_name(config.target))
  with open(os.path.join(out_dir, "patch_attack.json"), "w") as f:
    json.dump(summary, f, indent=2)
  patch_attack.save_plot(
      summary, os.path.join(out_dir, "patch_attack.png"),
      title=f"{os.path.basename(_PATCH.value)} -> "
            f"{summary['target_name']} ({summary['n_eligible']} images)")
  first = load(result.paths[0])[None]
  shown, key = [], jax.random.PRNGKey(config.seed)
  for i, (width, shape) in enumerate(zip(config.widths, result.patch_shapes)):
    real = patch_attack.resize_patch(patch, shape)
    top, left = patch_attack.corner_offset(config.corners[0], shape,
                                           first.shape[1:3], config.margin)
    shown.append(patch_attack.paste(first, real, top, left)[0])
    if width == max(config.widths):
      control = patch_attack.noise_patch(jax.random.fold_in(key, i), real)
      shown.append(patch_attack.paste(first, control, top, left)[0])
  plotting.save_png(plotting.grid(np.stack(shown), ncols=len(shown), pad=4),
                    os.path.join(out_dir, "examples.png"))
  for kind in patch_attack.KINDS:
    for row in summary[kind]:
      print(f"{kind:8s} width {row['width']:.2f}: success "
            f"{row['success_rate']:.3f}, changed {row['changed_rate']:.3f}, "
            f"p(target) {row['mean_target_prob']:.3f}")


if __name__ == "__main__":
  cli.run(main)
