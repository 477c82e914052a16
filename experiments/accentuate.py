r"""Feature accentuation (Hamblin et al. 2024): a feature shown inside photos.

  python experiments/accentuate.py --image=photo.jpg --objective=logit:goldfish \
      --layer_reg=mixed4a --reg_weight=1 --size=128 --steps=64 --out=/tmp/acc

Starts from each photo's own spectrum (phase optimised, magnitude fixed) and
maximises the objective minus ``reg_weight ×`` the relative squared distance
of ``--layer_reg``'s activations from the photo's. ``--image`` may repeat:
all photos render in one program. Objective specs: ``channel:LAYER:I``,
``neuron:LAYER:I``, ``logit:CLASS`` (a class name, WordNet id or index), or
your own family ``FACTORY@LAYER:I`` (FACTORY registered with
``atlasjax.optvis.registry.register_objective`` or ``package.module:factory``;
``factory(layer)`` returns ``index -> Objective``). ``--transforms`` (default
none, so the regularized activations stay aligned with the photo's) takes a
built-in preset, a registered name or ``package.module:factory``.

Writes ``accent_<i>.png`` per photo (the photo beside the accentuated image,
and its MaCo transparency with ``--alpha_map``) and ``accentuation.json``:
per photo the objective on the photo and on the result, the gain, and the
activation distance ``‖a_L(result) − a_L(photo)‖ / ‖a_L(photo)‖``.
"""

import dataclasses
import json

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import cli
from atlasjax import images as images_lib
from atlasjax import labels as labels_lib
from atlasjax import plotting
from atlasjax.optvis import accentuate as acc
from atlasjax.optvis import objectives
from atlasjax.optvis import param as param_lib
from atlasjax.optvis import registry

_IMAGE = flags.DEFINE_multi_string("image", [], "Photo(s) to accentuate.")
_OBJECTIVE = flags.DEFINE_string("objective", None, "Feature objective spec.",
                                 required=True)
_LAYER_REG = flags.DEFINE_string("layer_reg", None,
                                 "Regularized layer (default: the model's default layer).")
_REG_WEIGHT = flags.DEFINE_float("reg_weight", acc.DEFAULT_REG_WEIGHT,
                                 "Weight λ of the activation distance.")
_SIZE = flags.DEFINE_integer("size", 128, "Photo side in pixels (centre crop).")
_STEPS = flags.DEFINE_integer("steps", acc.DEFAULT_CONFIG.steps, "Optimisation steps.")
_LR = flags.DEFINE_float("lr", acc.DEFAULT_CONFIG.lr, "Adam learning rate.")
_TRANSFORMS = cli.define_transforms(acc.DEFAULT_CONFIG.transforms)
_ALPHA_MAP = flags.DEFINE_boolean("alpha_map", False, "Also show the transparency map.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)


@dataclasses.dataclass(frozen=True)
class Feature:
  """``arg -> Objective`` for one parsed spec (hashable: compiles once)."""
  kind: str
  layer: str
  factory: str = ""   # kind "custom": the registered name or import path

  def __call__(self, arg):
    if self.kind == "custom":
      return registry.lookup("objective", self.factory)(self.layer)(arg)
    if self.kind == "channel":
      return objectives.channel(self.layer, arg)
    if self.kind == "neuron":
      return objectives.neuron(self.layer, arg)
    return objectives.class_logit(arg)


def parse_objective(spec: str, model, labels_fn) -> tuple[Feature, int]:
  """``--objective`` → (feature family, its argument), checked on the model."""
  custom = cli.custom_objective(spec, model)
  if custom:
    factory, layer, index = custom
    if not index.isdigit():
      raise ValueError(f"--objective={spec}: the index {index!r} must be an "
                       "integer ≥ 0")
    return Feature("custom", layer, factory), int(index)
  kind, _, rest = spec.partition(":")
  if kind in ("channel", "neuron"):
    layer, _, index = rest.partition(":")
    if not layer or not index.isdigit():
      raise ValueError(f"--objective={spec}: write {kind}:LAYER:I, e.g. "
                       f"{kind}:{model.default_layer}:3")
    depth = model.layer(layer).depth
    if not 0 <= int(index) < depth:
      raise ValueError(f"--objective={spec}: channel {index} outside 0..{depth - 1}")
    return Feature(kind, layer), int(index)
  if kind == "logit":
    return Feature(kind, "logits"), labels_fn().lookup(rest.strip())
  raise ValueError(f"--objective={spec}: use channel:LAYER:I, neuron:LAYER:I, "
                   f"logit:CLASS or FACTORY{cli.CUSTOM_OBJECTIVE}LAYER:I")


def load_photos(paths, size: int) -> np.ndarray:
  """``[N, size, size, 3]``: shorter side to ``size``, centre crop."""
  return np.stack([images_lib.eval_preprocess(images_lib.load_pil(cli.image_file(p)),
                                              resize=size, crop=size)
                   for p in paths])


def main(argv):
  del argv
  if not _IMAGE.value:
    raise ValueError("Give at least one --image=PHOTO.")
  if _REG_WEIGHT.value < 0:
    raise ValueError(f"--reg_weight={_REG_WEIGHT.value} must be ≥ 0.")
  cli.check_pieces(transforms=_TRANSFORMS.value)
  model, params = cli.load_model()
  cli.check_size(model, _SIZE.value, "--size")
  layer = cli.layer_or_default(model, _LAYER_REG.value)
  feature, arg = parse_objective(_OBJECTIVE.value, model,
                                 lambda: labels_lib.load(cli.DATA.value))
  photos = load_photos(_IMAGE.value, _SIZE.value)   # every input checked first
  config = dataclasses.replace(acc.DEFAULT_CONFIG, steps=_STEPS.value, lr=_LR.value,
                               alpha_map=_ALPHA_MAP.value,
                               transforms=_TRANSFORMS.value)
  acc.check_transforms(config, _SIZE.value)
  out = cli.output_dir(_OUT.value)
  n = len(photos)
  result = acc.accentuate(model, params, jnp.asarray(photos), feature,
                          jnp.full((n,), arg, jnp.int32), layer, _REG_WEIGHT.value,
                          config, jax.random.PRNGKey(_SEED.value))
  records = []
  for i, path in enumerate(_IMAGE.value):
    panels = [np.asarray(result.photos[i]), np.asarray(result.images[i])]
    if result.alpha_map is not None:
      rgba = param_lib.transparency(panels[1], np.asarray(result.alpha_map[i]))
      panels.append(rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:]))
    file = f"accent_{i:03d}.png"
    plotting.save_png(plotting.hstack(panels), out / file)
    records.append({
        "image": path, "file": file, "objective": _OBJECTIVE.value,
        "layer_reg": layer, "reg_weight": _REG_WEIGHT.value,
        "objective_photo": float(result.objective_start[i]),
        "objective_accentuated": float(result.objective_end[i]),
        "gain": float(result.gain[i]), "distance": float(result.distance[i])})
    print(f"{path}: {_OBJECTIVE.value} {records[-1]['objective_photo']:.3g} → "
          f"{records[-1]['objective_accentuated']:.3g}, distance at {layer} "
          f"{records[-1]['distance']:.3g}")
  (out / "accentuation.json").write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
  cli.run(main)
