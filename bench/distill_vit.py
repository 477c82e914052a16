r"""Distils GoogLeNet into a small ViT on the sample photos: a transformer to look at.

  python bench/distill_vit.py [--budget_s=1600] [--steps=900] \
      [--dense=block1:mixed3b,block3:mixed4c] [--fold_head] \
      [--workdir=~/.cache/atlasjax/vit_distilled_v2]

No pretrained transformer ships in any package this project can install, so
this trains ``STUDENT``, :data:`atlasjax.models.vit.DISTILLED`'s
architecture (6 blocks, width 192, 16 px patches at 112 px, a 7×7 token grid)
with a GAP head, from BVLC GoogLeNet on the 640
training photos of the sample set. Matching the logits alone (Hinton et al.
2015) memorises the crops (session 5: held-out agreement 0/160), so the
student also learns *dense* targets, and sees mixed images:

* **Dense feature distillation.** The teacher sees each crop at 224 px, where
  ``mixed5b`` is a 7×7 map — the student's token grid — and ``mixed3b``,
  ``mixed4c`` average-pool to it. ``--dense=blockI:layer`` regresses block
  ``I``'s patch tokens (layer-normalised, through a linear projection used only
  in training) onto the teacher's map, each channel standardised over the pool
  (mean squared error): 49 local targets per crop instead of one distribution.
* **A head folded from the teacher's classifier** (``--fold_head``): a linear
  projection of the student's final (normed) patch tokens regresses
  ``mixed5b``; the student's logits are GoogLeNet's own classifier applied to
  the mean of that projection. Mean and linear maps commute, so the exported
  GAP head is exactly ``projection · classifier`` — the logits generalise as
  far as the feature regression does, instead of being learnt from 640 photos.
* **Consistent teaching** (Beyer et al. 2022): a ``--mix`` fraction of the
  crops are mixup or cutmix of two crops of different photos, and the teacher
  sees the mixed image, so every target is the teacher's answer to exactly
  what the student sees.

Measured on the shared 2-core CPU (bench/RESULTS.md, issue 19 item 3,
session 6): within half an hour neither the dense targets nor the mixed crops
made the student generalise (held-out agreement 0/160, as for logits alone).

Four phases, each resumable:

1. **split**: a seeded permutation of the photos holds ``--holdout`` of them
   out; the student never sees them.
2. **teacher**: ``--crops_per_photo`` random resized crops (scale 0.25–1,
   aspect 3/4–4/3, random flip) per training photo, seeded per chunk, some
   mixed; the teacher runs once on each (224 px), the student gets it at
   112 px. Crops (uint8), logits and the three 7×7 feature maps (float16) are
   written in chunks.
3. **train**: AdamW, warm-up + cosine, batches drawn by a seeded generator per
   step; an orbax checkpoint every ``--checkpoint_every`` steps, resumed on
   rerun; stops at ``--steps`` or after ``--budget_s`` seconds of this run.
4. **evaluate**: the student's top-1/top-5 on the held-out photos against their
   labels (112 px centre crop), the teacher's (224 px), their top-1
   agreement, and the agreement on training crops (memorisation shows as a gap);
   one JSON line (with the machine and its load) to stdout and
   ``results.jsonl``; the weights as a big_vision-layout ``.npz``
   (``vit_distilled.npz``; ``vit.build(STUDENT)`` with
   ``vit.load_variables(STUDENT, path)`` loads them). ``models.load("vit_distilled")`` keeps reading the
   session-5 student in :func:`atlasjax.models.vit.distilled_dir`: no student
   of this script has generalised better yet (bench/RESULTS.md).

Everything lives under ``--workdir`` (the cache's ``vit_distilled_v2/`` by
default), never in the repository.
"""

import dataclasses
import json
import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from PIL import Image

from atlasjax import data as data_lib
from atlasjax import images as images_lib
from atlasjax import labels as labels_lib
from atlasjax import models
from atlasjax.models import vit

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import machine  # pylint: disable=g-import-not-at-top

# The student: vit_distilled's architecture with a GAP head (the folded head
# needs one). Its weights stay in this script's work folder: models.load
# ("vit_distilled") reads the session-5 CLS student until one generalises
# better on the held-out photos (bench/RESULTS.md, issue 19 item 3, session 6).
STUDENT = dataclasses.replace(vit.DISTILLED, pool="gap")
WORKDIR_NAME = "vit_distilled_v2"
TEACHER = "bvlc_googlenet"
TEACHER_SIZE = 224
# Teacher maps stored per crop, each average-pooled to the student's grid.
TEACHER_LAYERS = ("mixed3b", "mixed4c", "mixed5b")
# The teacher layer the folded head regresses: GoogLeNet's classifier reads
# its spatial mean.
HEAD_LAYER = "mixed5b"
CROP_SCALE = (0.25, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CHUNK_PHOTOS = 40
LOG_EVERY = 10
EVAL_BATCH = 32
TRAIN_EVAL_CROPS = 320
# Crops the per-channel standardisation is estimated on (the first chunks'
# photos are a random sample: the split permutes them).
STATS_CROPS = 2048

_WORKDIR = flags.DEFINE_string("workdir", None, "Work folder (default: the "
                               f"atlasjax cache's {WORKDIR_NAME}/).")
_DATA = flags.DEFINE_string("data", None, "Data root (default $ATLASJAX_DATA).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the split, crops, init, batches.")
_HOLDOUT = flags.DEFINE_integer("holdout", 160, "Photos held out for evaluation.")
_CROPS = flags.DEFINE_integer("crops_per_photo", 16, "Teacher crops per photo.")
_MIX = flags.DEFINE_float("mix", 0.5, "Fraction of crops mixed with another "
                          "photo's crop (half mixup, half cutmix).")
_STEPS = flags.DEFINE_integer("steps", 900, "Training steps (the schedule's length).")
_BATCH = flags.DEFINE_integer("batch", 32, "Crops per step.")
_LR = flags.DEFINE_float("lr", 3e-4, "Peak learning rate.")
_WARMUP = flags.DEFINE_integer("warmup", 50, "Warm-up steps.")
_WD = flags.DEFINE_float("weight_decay", 0.05, "AdamW weight decay.")
_TEMPERATURE = flags.DEFINE_float("temperature", 4.0, "Distillation temperature.")
_DENSE = flags.DEFINE_list("dense", ["block1:mixed3b", "block3:mixed4c"],
                           "blockI:teacher_layer pairs regressed densely "
                           f"(teacher layers: {', '.join(TEACHER_LAYERS)}).")
_DENSE_WEIGHT = flags.DEFINE_float("dense_weight", 1.0,
                                   "Weight of each dense regression loss.")
_FOLD_HEAD = flags.DEFINE_bool("fold_head", True, "Logits through GoogLeNet's "
                               f"classifier from a projection onto {HEAD_LAYER}.")
_BUDGET = flags.DEFINE_float("budget_s", 1600.0, "Training seconds in this run.")
_CKPT_EVERY = flags.DEFINE_integer("checkpoint_every", 50, "Steps between checkpoints.")
_TEACHER_BATCH = flags.DEFINE_integer("teacher_batch", 32, "Teacher batch size.")
_TEACHER_DIR = flags.DEFINE_string("teacher_dir", None, "Teacher chunks (default "
                                   "WORKDIR/teacher); variants can share one.")
_TEACHER_ONLY = flags.DEFINE_bool("teacher_only", False, "Stop after phase 2.")
_SHARD = flags.DEFINE_string("teacher_shard", "0/1", "i/n: this process writes "
                             "chunks c with c % n == i (n processes share phase 2).")
_MAX_CHUNKS = flags.DEFINE_integer("max_chunks", 0, "Use only the first N chunks "
                                   f"of {CHUNK_PHOTOS} training photos (a pilot); 0: all.")


def log(**fields):
  print(json.dumps(fields), flush=True)


def load_avg():
  return machine.describe().get("load_avg_1m")


# ---------------------------------------------------------------------------
# 1. split

def split(paths, seed, holdout):
  """``(train, held_out)`` path lists from a seeded permutation."""
  order = np.random.default_rng([seed, 0]).permutation(len(paths))
  return [paths[i] for i in order[holdout:]], [paths[i] for i in order[:holdout]]


# ---------------------------------------------------------------------------
# 2. teacher crops

def random_crop(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
  """An Inception-style random resized crop with a random flip, at TEACHER_SIZE."""
  w, h = image.size
  for _ in range(10):
    area = w * h * rng.uniform(*CROP_SCALE)
    ratio = np.exp(rng.uniform(*np.log(CROP_RATIO)))
    cw, ch = round(np.sqrt(area * ratio)), round(np.sqrt(area / ratio))
    if cw <= w and ch <= h:
      break
  else:
    cw = ch = min(w, h)
  x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
  crop = image.crop((x, y, x + cw, y + ch)).resize(
      (TEACHER_SIZE, TEACHER_SIZE), Image.BICUBIC)
  crop = crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop
  return np.asarray(crop)


def mix_crops(crops: np.ndarray, photo: np.ndarray, fraction: float,
              rng: np.random.Generator) -> np.ndarray:
  """Replaces a ``fraction`` of ``crops`` by mixup or cutmix with another photo's.

  Mixup blends two crops with a uniform weight; cutmix pastes a box (uniform
  area fraction and centre) of the other crop. The partner always comes from a
  different photo (``photo[i]`` is crop i's photo), so a mixed crop shows two
  images and the teacher's answer to it is new information.
  """
  out = crops.copy()
  n, size = len(crops), crops.shape[1]
  for i in np.flatnonzero(rng.random(n) < fraction):
    others = np.flatnonzero(photo != photo[i])
    j = rng.choice(others)
    lam = rng.uniform()
    if rng.random() < 0.5:
      out[i] = np.round(lam * crops[i] + (1 - lam) * crops[j]).astype(np.uint8)
    else:
      side = int(round(size * np.sqrt(1 - lam)))
      cy, cx = rng.integers(0, size, 2)
      y0, x0 = max(cy - side // 2, 0), max(cx - side // 2, 0)
      y1, x1 = min(y0 + side, size), min(x0 + side, size)
      out[i, y0:y1, x0:x1] = crops[j, y0:y1, x0:x1]
  return out


def to_student(crops224: np.ndarray, size: int) -> np.ndarray:
  """uint8 ``[N, 224, 224, 3]`` → uint8 ``[N, size, size, 3]`` (box filter)."""
  return np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.BOX))
                   for c in crops224])


def pool_to_grid(x: jax.Array, grid: int) -> jax.Array:
  """``[B, H, W, C]`` → ``[B, grid·grid, C]``: mean over ``H/grid`` blocks."""
  b, h, w, c = x.shape
  x = x.reshape(b, grid, h // grid, grid, w // grid, c).mean(axis=(2, 4))
  return x.reshape(b, grid * grid, c)


def teacher_fn(teacher):
  """A jitted ``images [B, 224, 224, 3] in [0, 1] → {logits, layer maps}``."""
  model, params = teacher
  grid = STUDENT.grid

  @jax.jit
  def run(x):
    acts = model.apply(params, x, layers=("logits",) + TEACHER_LAYERS)
    out = {k: pool_to_grid(acts[k], grid) for k in TEACHER_LAYERS}
    out["logits"] = acts["logits"]
    return out
  return run


def chunk_crops(train, start, seed, crops_per_photo, mix):
  """The (seeded) crops of one chunk of photos, some mixed, uint8 at 224 px."""
  rng = np.random.default_rng([seed, 1, start])
  crops, photo = [], []
  for i in range(start, min(start + CHUNK_PHOTOS, len(train))):
    image = images_lib.load_pil(train[i])
    crops += [random_crop(image, rng) for _ in range(crops_per_photo)]
    photo += [i] * crops_per_photo
  return mix_crops(np.stack(crops), np.array(photo), mix, rng)


def teacher_chunks(folder, train, teacher, seed, crops_per_photo, mix, batch,
                   max_chunks=0, shard=(0, 1)):
  """Writes (resumably) ``folder/chunk_XXX.npz``: student crops + teacher targets."""
  run = teacher_fn(teacher)
  folder.mkdir(parents=True, exist_ok=True)
  chunks = range(0, len(train), CHUNK_PHOTOS)
  for c, start in enumerate(chunks[:max_chunks or None]):
    path = folder / f"chunk_{c:03d}.npz"
    if path.exists() or c % shard[1] != shard[0]:
      continue
    t0 = time.time()
    crops = chunk_crops(train, start, seed, crops_per_photo, mix)
    parts = [jax.device_get(run(jnp.asarray(crops[j:j + batch], jnp.float32) / 255))
             for j in range(0, len(crops), batch)]
    targets = {k: np.concatenate([p[k] for p in parts]).astype(np.float16)
               for k in parts[0]}
    tmp = folder / f".{path.name}.tmp.npz"
    np.savez(tmp, crops=to_student(crops, STUDENT.image_size), **targets)
    tmp.replace(path)
    log(phase="teacher", chunk=c, of=len(chunks), crops=len(crops),
        seconds=round(time.time() - t0, 1), load=load_avg())


def read_pool(folder, max_chunks=0):
  """``{"crops": uint8, "logits": f32, layer: f16 [N, 49, C]}`` of the chunks."""
  files = sorted(folder.glob("chunk_*.npz"))[:max_chunks or None]
  parts = [dict(np.load(f)) for f in files]
  pool = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  pool["logits"] = pool["logits"].astype(np.float32)
  return pool


# ---------------------------------------------------------------------------
# 3. train

def parse_dense(pairs, spec):
  """``["block1:mixed3b", ...]`` → ``{"block1": "mixed3b"}``, checked."""
  out = {}
  for pair in pairs:
    block, _, layer = pair.partition(":")
    blocks = [f"block{i}" for i in range(spec.depth)]
    if block not in blocks or layer not in TEACHER_LAYERS:
      raise app.UsageError(f"--dense={pair}: use blockI:layer with blockI in "
                           f"{blocks[0]}..{blocks[-1]} and layer in {TEACHER_LAYERS}")
    out[block] = layer
  return out


def feature_stats(pool, layers):
  """Per-channel ``(mean, std)`` of each teacher map over the pool's start."""
  stats = {}
  for k in layers:
    x = pool[k][:STATS_CROPS].astype(np.float32).reshape(-1, pool[k].shape[-1])
    stats[k] = (x.mean(0), x.std(0) + 1e-3)
  return stats


def init_projections(key, spec, dense, fold_head, pool):
  """Training-only linear maps from student tokens to teacher channels."""
  targets = dict(dense)
  if fold_head:
    targets[vit.NORM] = HEAD_LAYER
  keys = jax.random.split(key, len(targets))
  return {name: {"kernel": jax.random.normal(k, (spec.width, pool[layer].shape[-1]))
                 / np.sqrt(spec.width),
                 "bias": jnp.zeros(pool[layer].shape[-1])}
          for k, (name, layer) in zip(keys, sorted(targets.items()))}


def layer_norm(x):
  mean = x.mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(x.var(-1, keepdims=True) + 1e-6)


def make_loss(spec, dense, fold_head, stats, classifier, temperature,
              dense_weight):
  """``loss(params, images, targets) → (total, parts)``.

  ``params`` holds the student (``"vit"``) and the projections (``"proj"``).
  Block outputs come from ``capture_intermediates``: the ViT module itself is
  unchanged, so the exported weights are a plain ``ViT(spec)``.
  """
  module = vit.ViT(spec)
  wanted = set(dense) | ({vit.NORM} if fold_head else set())
  standardize = {k: (jnp.asarray(m), jnp.asarray(s)) for k, (m, s) in stats.items()}

  def regress(proj, tokens, target, layer):
    mean, std = standardize[layer]
    z = tokens @ proj["kernel"] + proj["bias"]
    return jnp.mean((z - (target.astype(jnp.float32) - mean) / std) ** 2)

  def loss_fn(params, images, targets):
    logits, state = module.apply(
        params["vit"], vit_input(images),
        capture_intermediates=lambda m, _: m.name in wanted)
    inter = state.get("intermediates", {})
    parts = {}
    for block, layer in dense.items():
      tokens = layer_norm(inter[block]["__call__"][0][:, spec.prefix_tokens:])
      parts[block] = regress(params["proj"][block], tokens, targets[layer], layer)
    if fold_head:
      tokens = inter[vit.NORM]["__call__"][0][:, spec.prefix_tokens:]
      parts["head"] = regress(params["proj"][vit.NORM], tokens,
                              targets[HEAD_LAYER], HEAD_LAYER)
      logits = folded_logits(params["proj"][vit.NORM], tokens.mean(1),
                             standardize[HEAD_LAYER], classifier)
    parts["kl"] = distillation_kl(targets["logits"], logits, temperature)
    total = parts["kl"] + dense_weight * sum(
        v for k, v in parts.items() if k != "kl")
    return total, parts
  return loss_fn


def distillation_kl(teacher_logits, student_logits, temperature):
  """KL(teacher ∥ student) at ``temperature``, × T² (Hinton et al. 2015)."""
  t = jax.nn.log_softmax(teacher_logits / temperature)
  s = jax.nn.log_softmax(student_logits / temperature)
  return (jnp.exp(t) * (t - s)).sum(-1).mean() * temperature ** 2


def check_export(loss_fn, params, variables, pool, temperature):
  """``(kl of the training path, kl of the exported ViT)`` on the first crops.

  Equal (to float32 rounding) when the exported model is the trained one,
  folded head included.
  """
  n = EVAL_BATCH
  targets = {k: jnp.asarray(v[:n]) for k, v in pool.items() if k != "crops"}
  images = jnp.asarray(pool["crops"][:n])
  _, parts = jax.jit(loss_fn)(params, images, targets)
  exported = vit.ViT(STUDENT).apply(variables, vit_input(images))
  return float(parts["kl"]), float(distillation_kl(targets["logits"], exported,
                                                   temperature))


def folded_head(proj, stats, classifier):
  """The GAP head ``{"kernel", "bias"}`` equal to classifier(unstandardise(proj)).

  The projection predicts standardised ``mixed5b``; ``z·std + mean`` is the
  map, GoogLeNet's classifier reads its spatial mean. All three are affine
  and commute with the mean over tokens, so they compose into one Dense.
  """
  mean, std = stats
  kernel = (proj["kernel"] * std) @ classifier["kernel"]
  bias = (proj["bias"] * std + mean) @ classifier["kernel"] + classifier["bias"]
  return {"kernel": kernel, "bias": bias}


def folded_logits(proj, pooled, stats, classifier):
  head = folded_head(proj, stats, classifier)
  return pooled @ head["kernel"] + head["bias"]


def vit_input(uint8_images):
  x = uint8_images.astype(jnp.float32) / 255
  return (x - jnp.asarray(vit.INPUT_MEAN)) / jnp.asarray(vit.INPUT_STD)


def make_step(loss_fn, optimizer):
  @jax.jit
  def step(params, opt_state, images, targets):
    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, images, targets)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, parts
  return step


def train(workdir, pool, seed, loss_fn, projections):
  """The resumable training loop; returns ``(params, step, seconds)``."""
  schedule = optax.warmup_cosine_decay_schedule(0.0, _LR.value, _WARMUP.value,
                                                _STEPS.value)
  optimizer = optax.chain(optax.clip_by_global_norm(1.0),
                          optax.adamw(schedule, weight_decay=_WD.value))
  params = {"vit": vit.init(jax.random.PRNGKey(seed), STUDENT),
            "proj": projections}
  state = {"params": params, "opt": optimizer.init(params), "step": 0}
  manager = ocp.CheckpointManager(
      (workdir / "ckpt").resolve(), options=ocp.CheckpointManagerOptions(max_to_keep=2))
  if manager.latest_step() is not None:
    state = manager.restore(manager.latest_step(),
                            args=ocp.args.StandardRestore(state))
    log(phase="train", resumed_at=int(state["step"]))
  step_fn = make_step(loss_fn, optimizer)
  keys = [k for k in pool if k != "crops"]
  t0, history = time.time(), []
  params, opt_state, step = state["params"], state["opt"], int(state["step"])
  while step < _STEPS.value and time.time() - t0 < _BUDGET.value:
    idx = np.sort(np.random.default_rng([seed, 2, step]).choice(
        len(pool["crops"]), _BATCH.value, replace=False))
    params, opt_state, loss, parts = step_fn(
        params, opt_state, jnp.asarray(pool["crops"][idx]),
        {k: jnp.asarray(pool[k][idx]) for k in keys})
    step += 1
    history.append({"loss": loss, **parts})
    if step % LOG_EVERY == 0:
      means = {k: round(float(np.mean([h[k] for h in history])), 4)
               for k in history[0]}
      log(phase="train", step=step, **means, seconds=round(time.time() - t0, 1),
          load=load_avg())
      history = []
    if step % _CKPT_EVERY.value == 0 or step == _STEPS.value:
      manager.save(step, args=ocp.args.StandardSave(
          {"params": params, "opt": opt_state, "step": step}))
  manager.save(step, args=ocp.args.StandardSave(
      {"params": params, "opt": opt_state, "step": step}))
  manager.wait_until_finished()
  return params, step, time.time() - t0


def export_variables(params, fold_head, stats, classifier):
  """The plain ``ViT(STUDENT)`` variables: the folded head swapped in."""
  variables = jax.tree.map(np.asarray, params["vit"])
  if fold_head:
    head = folded_head(params["proj"][vit.NORM], stats[HEAD_LAYER], classifier)
    variables["params"][vit.HEAD] = jax.tree.map(np.asarray, head)
  return variables


# ---------------------------------------------------------------------------
# 4. evaluate

def topk_hits(logits, labels, k):
  top = np.argsort(-logits, axis=-1)[:, :k]
  return float(np.mean([label in row for label, row in zip(labels, top)]))


def batched(fn, x):
  return np.concatenate([np.asarray(fn(jnp.asarray(x[i:i + EVAL_BATCH])))
                         for i in range(0, len(x), EVAL_BATCH)])


def evaluate(variables, held, teacher, labels, pool):
  """Held-out accuracy and teacher agreement; agreement on training crops too."""
  model, tparams = teacher
  wnids = [labels_lib.wnid_from_filename(p) for p in held]
  targets = np.array([labels.index_of_wnid(w) for w in wnids])
  size = STUDENT.image_size
  student_in = np.stack([images_lib.load_for_model(p, size) for p in held])
  teacher_in = np.stack([images_lib.load_for_model(p, TEACHER_SIZE) for p in held])
  module = vit.ViT(STUDENT)
  student = jax.jit(lambda x: module.apply(
      variables, (x - jnp.asarray(vit.INPUT_MEAN)) / jnp.asarray(vit.INPUT_STD)))
  s = batched(student, student_in)
  t = batched(jax.jit(lambda x: model.apply(tparams, x, layers=("logits",))["logits"]),
              teacher_in)
  seen = slice(0, TRAIN_EVAL_CROPS)
  s_train = batched(student, pool["crops"][seen].astype(np.float32) / 255)
  return {"student_top1": topk_hits(s, targets, 1), "student_top5": topk_hits(s, targets, 5),
          "teacher_top1": topk_hits(t, targets, 1), "teacher_top5": topk_hits(t, targets, 5),
          "agreement_top1": float(np.mean(s.argmax(-1) == t.argmax(-1))),
          "student_top1_in_teacher_top5": topk_hits(t, s.argmax(-1), 5),
          "train_crops_agreement_top1": float(np.mean(
              s_train.argmax(-1) == pool["logits"][seen].argmax(-1))),
          "held_out_photos": len(held)}


def main(argv):
  del argv
  workdir = pathlib.Path(_WORKDIR.value or data_lib.cache_dir() / WORKDIR_NAME)
  workdir.mkdir(parents=True, exist_ok=True)
  seed, spec = _SEED.value, STUDENT
  dense = parse_dense(_DENSE.value, spec)
  paths = images_lib.list_images(data_lib.sample_dir(_DATA.value))
  train_paths, held = split(paths, seed, _HOLDOUT.value)
  teacher = models.load(TEACHER, _DATA.value)
  folder = pathlib.Path(_TEACHER_DIR.value or workdir / "teacher")
  t0 = time.time()
  teacher_chunks(folder, train_paths, teacher, seed, _CROPS.value, _MIX.value,
                 _TEACHER_BATCH.value, _MAX_CHUNKS.value,
                 tuple(int(x) for x in _SHARD.value.split("/")))
  teacher_s = time.time() - t0
  if _TEACHER_ONLY.value:
    return
  pool = read_pool(folder, _MAX_CHUNKS.value)
  stats = feature_stats(pool, set(dense.values()) | {HEAD_LAYER})
  classifier = teacher[1]["params"]["logits"]
  loss_fn = make_loss(spec, dense, _FOLD_HEAD.value, stats, classifier,
                      _TEMPERATURE.value, _DENSE_WEIGHT.value)
  projections = init_projections(jax.random.fold_in(jax.random.PRNGKey(seed), 3), spec, dense,
                                 _FOLD_HEAD.value, pool)
  params, step, train_s = train(workdir, pool, seed, loss_fn, projections)
  variables = export_variables(params, _FOLD_HEAD.value, stats, classifier)
  metrics = evaluate(variables, held, teacher, labels_lib.load(_DATA.value), pool)
  kl_train_path, kl_exported = check_export(loss_fn, params, variables, pool,
                                            _TEMPERATURE.value)
  out = vit.save_npz(variables, workdir / vit.DISTILLED_FILE)
  record = {"workload": "distill_vit", "student": spec.name, "pool": spec.pool,
            "steps_done": step, "steps_planned": _STEPS.value,
            "batch": _BATCH.value, "crops": len(pool["crops"]), "mix": _MIX.value,
            "dense": _DENSE.value, "fold_head": _FOLD_HEAD.value,
            "train_photos": min(len(train_paths), _MAX_CHUNKS.value * CHUNK_PHOTOS
                                  or len(train_paths)), "teacher_s_this_run": round(teacher_s, 1),
            "train_s_this_run": round(train_s, 1), "seed": seed,
            "temperature": _TEMPERATURE.value, **metrics,
            "kl_first_crops_train_path": round(kl_train_path, 5),
            "kl_first_crops_exported": round(kl_exported, 5), "weights": str(out),
            "machine": machine.describe()}
  log(**record)
  with open(workdir / "results.jsonl", "a") as f:
    f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
  app.run(main)
