r"""Distils GoogLeNet into a small ViT on the sample photos: a transformer to look at.

  nice -n 5 python bench/distill_vit.py [--budget_s=1500] [--steps=600] \
      [--workdir=~/.cache/atlasjax/vit_distilled]

No pretrained transformer ships in any package this project can install, so
this trains :data:`atlasjax.models.vit.DISTILLED` (6 blocks, width 192, 16 px
patches at 112 px, CLS head) to match BVLC GoogLeNet's logits (Hinton et al.
2015: KL divergence at temperature T, scaled by T²) on augmented crops of the
sample photos. Four phases, each resumable:

1. **split**: a seeded permutation of the photos holds ``--holdout`` of them
   out; the student never sees them.
2. **teacher**: ``--crops_per_photo`` random resized crops (scale 0.25–1,
   aspect 3/4–4/3, random flip) per training photo, seeded per photo; the
   teacher sees each crop at 224 px, the student gets it at 112 px. Crops
   (uint8) and teacher logits are written in chunks, so the teacher runs once
   and not every step.
3. **train**: AdamW, warm-up + cosine, batches drawn by a seeded generator per
   step; an orbax checkpoint every ``--checkpoint_every`` steps, resumed on
   rerun; stops at ``--steps`` or after ``--budget_s`` seconds of this run.
4. **evaluate**: the student's top-1/top-5 on the held-out photos against their
   labels (112 px centre crop), the teacher's (224 px), and their top-1
   agreement; one JSON line (with the machine and its load) to stdout and
   ``results.jsonl``; the weights as a big_vision-layout ``.npz``
   (``vit_distilled.npz``), which ``models.load("vit_distilled")`` reads.

Everything lives under ``--workdir`` (the atlasjax cache by default), never in
the repository.
"""

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

TEACHER = "bvlc_googlenet"
TEACHER_SIZE = 224
CROP_SCALE = (0.25, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CHUNK_PHOTOS = 40
LOG_EVERY = 10

_WORKDIR = flags.DEFINE_string("workdir", None, "Work folder (default: "
                               "the atlasjax cache's vit_distilled/).")
_DATA = flags.DEFINE_string("data", None, "Data root (default $ATLASJAX_DATA).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the split, crops, init, batches.")
_HOLDOUT = flags.DEFINE_integer("holdout", 160, "Photos held out for evaluation.")
_CROPS = flags.DEFINE_integer("crops_per_photo", 8, "Teacher crops per photo.")
_STEPS = flags.DEFINE_integer("steps", 600, "Training steps (the schedule's length).")
_BATCH = flags.DEFINE_integer("batch", 64, "Crops per step.")
_LR = flags.DEFINE_float("lr", 1e-3, "Peak learning rate.")
_WARMUP = flags.DEFINE_integer("warmup", 40, "Warm-up steps.")
_WD = flags.DEFINE_float("weight_decay", 0.05, "AdamW weight decay.")
_TEMPERATURE = flags.DEFINE_float("temperature", 4.0, "Distillation temperature.")
_BUDGET = flags.DEFINE_float("budget_s", 1500.0, "Training seconds in this run.")
_CKPT_EVERY = flags.DEFINE_integer("checkpoint_every", 50, "Steps between checkpoints.")
_TEACHER_BATCH = flags.DEFINE_integer("teacher_batch", 32, "Teacher batch size.")


def log(**fields):
  print(json.dumps(fields), flush=True)


# ---------------------------------------------------------------------------
# 1. split

def split(paths, seed, holdout):
  """``(train, held_out)`` path lists from a seeded permutation."""
  order = np.random.default_rng([seed, 0]).permutation(len(paths))
  return [paths[i] for i in order[holdout:]], [paths[i] for i in order[:holdout]]


# ---------------------------------------------------------------------------
# 2. teacher crops

def random_crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
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
  return crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def to_student(crops224: np.ndarray, size: int) -> np.ndarray:
  """uint8 ``[N, 224, 224, 3]`` → uint8 ``[N, size, size, 3]`` (box filter)."""
  return np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.BOX))
                   for c in crops224])


def teacher_chunks(workdir, train, teacher, seed, crops_per_photo, batch):
  """Writes (resumably) ``teacher/chunk_XXX.npz``: student crops + teacher logits."""
  model, params = teacher
  logits_fn = jax.jit(lambda x: model.apply(params, x, layers=("logits",))["logits"])
  folder = workdir / "teacher"
  folder.mkdir(parents=True, exist_ok=True)
  chunks = range(0, len(train), CHUNK_PHOTOS)
  for c, start in enumerate(chunks):
    path = folder / f"chunk_{c:03d}.npz"
    if path.exists():
      continue
    t0 = time.time()
    crops = []
    for i in range(start, min(start + CHUNK_PHOTOS, len(train))):
      rng = np.random.default_rng([seed, 1, i])
      image = images_lib.load_pil(train[i])
      crops += [np.asarray(random_crop(image, rng)) for _ in range(crops_per_photo)]
    crops = np.stack(crops)
    logits = np.concatenate([np.asarray(logits_fn(jnp.asarray(crops[j:j + batch],
                                                              jnp.float32) / 255))
                             for j in range(0, len(crops), batch)])
    tmp = folder / f".{path.name}.tmp.npz"
    np.savez(tmp, crops=to_student(crops, vit.DISTILLED.image_size),
             logits=logits.astype(np.float16))
    tmp.replace(path)
    log(phase="teacher", chunk=c, of=len(chunks), crops=len(crops),
        seconds=round(time.time() - t0, 1), load=machine.describe().get("load_avg_1m"))


def read_pool(workdir):
  files = sorted((workdir / "teacher").glob("chunk_*.npz"))
  parts = [np.load(f) for f in files]
  return (np.concatenate([p["crops"] for p in parts]),
          np.concatenate([p["logits"] for p in parts]).astype(np.float32))


# ---------------------------------------------------------------------------
# 3. train

def make_step(spec, optimizer, temperature):
  module = vit.ViT(spec)

  def loss_fn(params, images, teacher_logits):
    student = module.apply(params, vit_input(images))
    t = jax.nn.log_softmax(teacher_logits / temperature)
    s = jax.nn.log_softmax(student / temperature)
    return (jnp.exp(t) * (t - s)).sum(-1).mean() * temperature ** 2

  @jax.jit
  def step(params, opt_state, images, teacher_logits):
    loss, grads = jax.value_and_grad(loss_fn)(params, images, teacher_logits)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  return step


def vit_input(uint8_images):
  x = uint8_images.astype(jnp.float32) / 255
  return (x - jnp.asarray(vit.INPUT_MEAN)) / jnp.asarray(vit.INPUT_STD)


def train(workdir, pool, seed):
  crops, logits = pool
  schedule = optax.warmup_cosine_decay_schedule(0.0, _LR.value, _WARMUP.value,
                                                _STEPS.value)
  optimizer = optax.chain(optax.clip_by_global_norm(1.0),
                          optax.adamw(schedule, weight_decay=_WD.value))
  params = vit.init(jax.random.PRNGKey(seed), vit.DISTILLED)
  state = {"params": params, "opt": optimizer.init(params), "step": 0}
  manager = ocp.CheckpointManager(
      (workdir / "ckpt").resolve(), options=ocp.CheckpointManagerOptions(max_to_keep=2))
  if manager.latest_step() is not None:
    state = manager.restore(manager.latest_step(),
                            args=ocp.args.StandardRestore(state))
    log(phase="train", resumed_at=int(state["step"]))
  step_fn = make_step(vit.DISTILLED, optimizer, _TEMPERATURE.value)
  t0, losses = time.time(), []
  params, opt_state, step = state["params"], state["opt"], int(state["step"])
  while step < _STEPS.value and time.time() - t0 < _BUDGET.value:
    idx = np.random.default_rng([seed, 2, step]).choice(len(crops), _BATCH.value,
                                                         replace=False)
    params, opt_state, loss = step_fn(params, opt_state, jnp.asarray(crops[idx]),
                                      jnp.asarray(logits[idx]))
    step += 1
    losses.append(loss)
    if step % LOG_EVERY == 0:
      log(phase="train", step=step, loss=round(float(np.mean(losses)), 4),
          seconds=round(time.time() - t0, 1),
          load=machine.describe().get("load_avg_1m"))
      losses = []
    if step % _CKPT_EVERY.value == 0 or step == _STEPS.value:
      manager.save(step, args=ocp.args.StandardSave(
          {"params": params, "opt": opt_state, "step": step}))
  manager.save(step, args=ocp.args.StandardSave(
      {"params": params, "opt": opt_state, "step": step}))
  manager.wait_until_finished()
  return params, step, time.time() - t0


# ---------------------------------------------------------------------------
# 4. evaluate

def topk_hits(logits, labels, k):
  top = np.argsort(-logits, axis=-1)[:, :k]
  return float(np.mean([label in row for label, row in zip(labels, top)]))


def evaluate(params, held, teacher, labels):
  model, tparams = teacher
  wnids = [labels_lib.wnid_from_filename(p) for p in held]
  targets = np.array([labels.index_of_wnid(w) for w in wnids])
  size = vit.DISTILLED.image_size
  student_in = np.stack([images_lib.load_for_model(p, size) for p in held])
  teacher_in = np.stack([images_lib.load_for_model(p, TEACHER_SIZE) for p in held])
  module = vit.ViT(vit.DISTILLED)
  s = np.asarray(jax.jit(lambda p, x: module.apply(p, (x - 0.5) / 0.5))(
      params, jnp.asarray(student_in)))
  t = np.concatenate([np.asarray(model.apply(tparams, jnp.asarray(teacher_in[i:i + 32]),
                                             layers=("logits",))["logits"])
                      for i in range(0, len(held), 32)])
  return {"student_top1": topk_hits(s, targets, 1), "student_top5": topk_hits(s, targets, 5),
          "teacher_top1": topk_hits(t, targets, 1), "teacher_top5": topk_hits(t, targets, 5),
          "agreement_top1": float(np.mean(s.argmax(-1) == t.argmax(-1))),
          "student_top1_in_teacher_top5": topk_hits(t, s.argmax(-1), 5),
          "held_out_photos": len(held)}


def main(argv):
  del argv
  workdir = pathlib.Path(_WORKDIR.value) if _WORKDIR.value else vit.distilled_dir()
  workdir.mkdir(parents=True, exist_ok=True)
  seed = _SEED.value
  paths = images_lib.list_images(data_lib.sample_dir(_DATA.value))
  train_paths, held = split(paths, seed, _HOLDOUT.value)
  teacher = models.load(TEACHER, _DATA.value)
  t0 = time.time()
  teacher_chunks(workdir, train_paths, teacher, seed, _CROPS.value,
                 _TEACHER_BATCH.value)
  teacher_s = time.time() - t0
  pool = read_pool(workdir)
  params, step, train_s = train(workdir, pool, seed)
  metrics = evaluate(params, held, teacher, labels_lib.load(_DATA.value))
  out = vit.save_npz(params, workdir / vit.DISTILLED_FILE)
  record = {"workload": "distill_vit", "student": vit.DISTILLED.name,
            "steps_done": step, "steps_planned": _STEPS.value,
            "batch": _BATCH.value, "crops": len(pool[0]),
            "train_photos": len(train_paths), "teacher_s_this_run": round(teacher_s, 1),
            "train_s_this_run": round(train_s, 1), "seed": seed,
            "temperature": _TEMPERATURE.value, **metrics, "weights": str(out),
            "machine": machine.describe()}
  log(**record)
  with open(workdir / "results.jsonl", "a") as f:
    f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
  app.run(main)
