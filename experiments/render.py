r"""Renders feature visualizations of objectives given on the command line.

  python experiments/render.py --objective=channel:mixed4a:508 \
      --objective=channel:mixed4a:0-7 --objective=neuron:mixed4a:384 \
      --objective=deepdream:mixed4c --objective=logit:goldfish \
      --objective=direction:mixed4c:dirs.npy --size=128 --steps=512 --out=/tmp/vis

Objective specs: ``channel:LAYER:I``, ``neuron:LAYER:I``, ``deepdream:LAYER``,
``logit:CLASS`` (a class name, WordNet id or index), ``prob:CLASS``,
``direction:LAYER:FILE.npy`` (``[C]`` or ``[N, C]``), and your own family
``FACTORY@LAYER:I`` where FACTORY is a name registered with
``atlasjax.optvis.registry.register_objective`` or ``package.module:factory``
(``factory(layer) -> (index -> Objective)``; e.g.
``--objective=mylab.objectives:push_pull@mixed4a:0-7``). ``I`` may be a range
``A-B`` (inclusive), and ``CLASS`` a list ``a,b,c``: each renders a batch in one
program. ``--interpolate=LAYER:A,LAYER:B --frames=K`` renders a channel
interpolation with a shared + separate parameterization.

Writes one PNG per objective (a strip for ``--diversity`` / ``--interpolate``),
``contact_sheet.png`` and ``results.json``: a list of
``{"objective", "file", "final_value"}`` with files relative to ``--out``.
``--param=maco --transforms=maco`` is MaCo (Fel et al. 2023); ``--alpha_map``
also writes each image's transparency (``*_alpha.png``, RGBA: the
accumulated ``|∂L/∂x|`` as alpha, as in MaCo's figures).
"""

import dataclasses
import re

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

import cli
from atlasjax import labels as labels_lib
from atlasjax import workdir as workdir_lib
from atlasjax.optvis import objectives
from atlasjax.optvis import param as param_lib
from atlasjax.optvis import registry
from atlasjax.optvis import render as render_lib

_OBJECTIVE = flags.DEFINE_multi_string("objective", [], "Objective spec(s); see the module doc.")
_SIZE = flags.DEFINE_integer("size", 128, "Image side in pixels.")
_STEPS = flags.DEFINE_integer("steps", 512, "Optimisation steps.")
_PARAM = cli.define_param("fft")
_DECORRELATE = flags.DEFINE_boolean("decorrelate", True, "Decorrelate colours.")
_TRANSFORMS = cli.define_transforms("standard")
_LR = flags.DEFINE_float("lr", render_lib.DEFAULT_LR, "Adam learning rate.")
_ATTEMPTS = flags.DEFINE_integer("attempts", 1, "Restarts per objective; best kept.")
_DIVERSITY = flags.DEFINE_integer("diversity", 0, "Render K diverse images per objective.")
_DIVERSITY_WEIGHT = flags.DEFINE_float("diversity_weight", 1e2, "Weight of the diversity term.")
_DIVERSITY_LAYER = flags.DEFINE_string("diversity_layer", None,
                                       "Layer for the diversity term (default: the objective's).")
_INTERPOLATE = flags.DEFINE_string("interpolate", None, "LAYER:A,LAYER:B channel interpolation.")
_FRAMES = flags.DEFINE_integer("frames", 6, "Frames of --interpolate.")
_ALIGNMENT_WEIGHT = flags.DEFINE_float("alignment_weight", 1e-1, "Weight of alignment in --interpolate.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_CHUNK = flags.DEFINE_integer("chunk_size", None, "Items per compiled chunk.")
_PROGRESS = flags.DEFINE_integer("progress_every", 0, "Report progress every K steps.")
_ALPHA_MAP = flags.DEFINE_boolean("alpha_map", False,
                                  "Also write MaCo transparency maps (*_alpha.png).")


@dataclasses.dataclass(frozen=True)
class Family:
  """One parsed ``--objective``: a family, its batched args and item names."""
  kind: str
  layer: str
  args: np.ndarray
  names: tuple[str, ...]
  factory: str = ""   # kind "custom": the registered name or import path


def _indices(text: str, spec: str) -> list[int]:
  out = []
  for part in text.split(","):
    m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
    if not m:
      raise ValueError(
          f"--objective={spec}: {part.strip()!r} is not a channel index; write "
          "indices as 3 or 3,17 or 0-63, and give each objective its own "
          "--objective flag")
    out += list(range(int(m[1]), int(m[2] or m[1]) + 1))
  return out


def parse(spec: str, model, labels_fn) -> Family:
  custom = cli.custom_objective(spec, model)
  if custom:
    factory, layer, idx = custom
    ids = _indices(idx, spec)
    return Family("custom", layer, np.array(ids, np.int32),
                  tuple(f"{factory}@{layer}:{i}" for i in ids), factory)
  kind, _, rest = spec.partition(":")
  if kind in ("channel", "neuron"):
    layer, _, idx = rest.partition(":")
    # A layer name may hold a colon (a ViT's "block6/mlp/fc2:input"): the
    # longest layer name the spec starts with wins.
    known = [n for n in model.layer_names if rest.startswith(n + ":")]
    if known:
      layer = max(known, key=len)
      idx = rest[len(layer) + 1:]
    if not layer or not idx:
      raise ValueError(f"--objective={spec}: write {kind}:LAYER:INDICES, e.g. "
                       f"{kind}:{model.default_layer}:3")
    depth = model.layer(layer).depth
    ids = _indices(idx, spec)
    bad = [i for i in ids if not 0 <= i < depth]
    if bad:
      raise ValueError(f"{spec}: channels {bad} outside 0..{depth - 1}")
    return Family(kind, layer, np.array(ids, np.int32),
                  tuple(f"{kind}:{layer}:{i}" for i in ids))
  if kind == "deepdream":
    model.layer(rest)
    return Family(kind, rest, np.zeros((1,), np.int32), (f"deepdream:{rest}",))
  if kind in ("logit", "prob"):
    labels = labels_fn()
    ids = [labels.lookup(q.strip()) for q in rest.split(",")]
    return Family(kind, "logits", np.array(ids, np.int32),
                  tuple(f"{kind}:{labels.short_name(i)}" for i in ids))
  if kind == "direction":
    layer, _, path = rest.partition(":")
    model.layer(layer)
    vecs = np.load(path).astype(np.float32)
    vecs = vecs[None] if vecs.ndim == 1 else vecs
    if vecs.shape[-1] != model.layer(layer).depth:
      raise ValueError(f"{spec}: vectors have {vecs.shape[-1]} dims, "
                           f"{layer} has {model.layer(layer).depth} channels")
    return Family(kind, layer, vecs,
                  tuple(f"direction:{layer}:{path}#{i}" for i in range(len(vecs))))
  raise ValueError(f"Unknown objective kind in {spec!r}; use channel, neuron, "
                       "deepdream, logit, prob or direction")


@dataclasses.dataclass(frozen=True)
class MakeObjective:
  """``arg -> Objective`` for a family (hashable, so compilation is cached)."""
  kind: str
  layer: str
  diversity: float = 0.0
  diversity_layer: str | None = None
  factory: str = ""

  def __call__(self, arg):
    base = {
        "channel": lambda: objectives.channel(self.layer, arg),
        "neuron": lambda: objectives.neuron(self.layer, arg),
        "deepdream": lambda: objectives.deepdream(self.layer),
        "logit": lambda: objectives.class_logit(arg),
        "prob": lambda: objectives.class_probability(arg),
        "direction": lambda: objectives.direction(self.layer, arg),
        "custom": lambda: registry.lookup("objective", self.factory)(
            self.layer)(arg),
    }[self.kind]()
    if self.diversity:
      base = base + self.diversity * objectives.diversity(
          self.diversity_layer or self.layer)
    return base


def parse_interpolate(text: str, model) -> tuple[tuple[str, int], tuple[str, int]]:
  """``LAYER:A,LAYER:B`` → ((layer, a), (layer, b)), checked against the model."""
  ends = []
  for part in text.split(","):
    layer, _, index = part.strip().rpartition(":")
    if not layer or not index.isdigit():
      ends = []
      break
    depth = model.layer(layer).depth
    if not 0 <= int(index) < depth:
      raise ValueError(f"--interpolate={text}: channel {index} outside "
                       f"0..{depth - 1} of {layer}")
    ends.append((layer, int(index)))
  if len(ends) != 2:
    raise ValueError(f"--interpolate={text}: write LAYER:A,LAYER:B, e.g. "
                     f"{model.default_layer}:3,{model.default_layer}:17")
  return ends[0], ends[1]


def _interpolate_objective(layer1, layer2, weight):
  def make(arg):
    return (objectives.channel_interpolate(layer1, arg[0], layer2, arg[1])
            + weight * objectives.alignment(layer1))
  return make


def to_uint8(image: np.ndarray) -> np.ndarray:
  return (np.clip(np.asarray(image, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


def strip(images: np.ndarray) -> np.ndarray:
  """``[K, H, W, C]`` side by side, or a single ``[H, W, C]``."""
  return np.concatenate(list(images), axis=1) if images.ndim == 4 else images


def contact_sheet(tiles: list[np.ndarray], columns: int = 8, gap: int = 4) -> np.ndarray:
  h = max(t.shape[0] for t in tiles)
  w = max(t.shape[1] for t in tiles)
  c = tiles[0].shape[2]
  rows = -(-len(tiles) // columns)
  cols = min(columns, len(tiles))
  sheet = np.ones((rows * (h + gap) + gap, cols * (w + gap) + gap, c), np.float32)
  for i, t in enumerate(tiles):
    r, q = divmod(i, columns)
    y, x = gap + r * (h + gap), gap + q * (w + gap)
    sheet[y:y + t.shape[0], x:x + t.shape[1]] = t
  return sheet


def main(argv):
  del argv
  if not _OBJECTIVE.value and not _INTERPOLATE.value:
    raise ValueError("Give at least one --objective or --interpolate.")
  cli.check_pieces(param=_PARAM.value, transforms=_TRANSFORMS.value)
  model, params = cli.load_model()
  cli.check_size(model, _SIZE.value, "--size")
  labels_fn = lambda: labels_lib.load(cli.DATA.value)
  # Every spec is checked before anything renders.
  families = [parse(spec, model, labels_fn) for spec in _OBJECTIVE.value]
  ends = parse_interpolate(_INTERPOLATE.value, model) if _INTERPOLATE.value else None
  out = cli.output_dir(_OUT.value)
  config = render_lib.RenderConfig(
      size=_SIZE.value, steps=_STEPS.value, lr=_LR.value, attempts=_ATTEMPTS.value,
      chunk_size=_CHUNK.value, param=_PARAM.value, decorrelate=_DECORRELATE.value,
      transforms=_TRANSFORMS.value, images_per_item=max(1, _DIVERSITY.value),
      progress_every=_PROGRESS.value, alpha_map=_ALPHA_MAP.value)
  key = jax.random.PRNGKey(_SEED.value)
  records, tiles = [], []

  def save(name, images, value, alpha=None):
    file = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120] + f"_{len(records):03d}.png"
    workdir_lib.save_image(out / file, Image.fromarray(to_uint8(strip(images))))
    record = {"objective": name, "file": file, "final_value": float(value)}
    if alpha is not None:
      images, alpha = np.asarray(images), np.asarray(alpha)
      rgba = (param_lib.transparency(images, alpha) if images.ndim == 3 else
              np.stack([param_lib.transparency(i, a) for i, a in zip(images, alpha)]))
      record["alpha_file"] = file[:-4] + "_alpha.png"
      workdir_lib.save_image(out / record["alpha_file"],
                             Image.fromarray(to_uint8(strip(rgba))))
    records.append(record)
    tiles.append(np.asarray(strip(images), np.float32)[..., :3])

  for family in families:
    make = MakeObjective(family.kind, family.layer,
                         _DIVERSITY_WEIGHT.value if _DIVERSITY.value > 1 else 0.0,
                         _DIVERSITY_LAYER.value, family.factory)
    result = render_lib.render(model, params, make, args=jnp.asarray(family.args),
                               config=config, key=key)
    alphas = (np.asarray(result.alpha_map) if result.alpha_map is not None
              else [None] * len(family.names))
    for name, images, value, alpha in zip(family.names, np.asarray(result.images),
                                          np.asarray(result.values), alphas):
      save(name, images, value, alpha)
      print(f"{name}: {value:.4g}")

  if _INTERPOLATE.value:
    (l1, c1), (l2, c2) = ends
    frames = _FRAMES.value
    cfg = dataclasses.replace(config, images_per_item=frames)
    make = _interpolate_objective(l1, l2, _ALIGNMENT_WEIGHT.value)
    result = render_lib.render(
        model, params, make, args=jnp.array([[c1, c2]]), config=cfg, key=key,
        param=param_lib.shared_separate(config.size, frames, decorrelate=config.decorrelate))
    save(f"interpolate:{_INTERPOLATE.value}", np.asarray(result.images[0]),
         result.values[0],
         None if result.alpha_map is None else np.asarray(result.alpha_map[0]))

  workdir_lib.save_image(out / "contact_sheet.png",
                         Image.fromarray(to_uint8(contact_sheet(tiles))))
  workdir_lib.write_json(out / "results.json", records)
  print(f"wrote {len(records)} images, contact_sheet.png and results.json to {out}")


if __name__ == "__main__":
  cli.run(main)
