"""Patch attacks: does pasting a patch turn images into a target class?

The "noodles make a wok" experiment as a harness. A patch (a crop of a photo
or a rendered icon, optionally with alpha) is pasted onto every image at each
corner and at several widths (a fraction of the image width; height follows
the patch's aspect ratio). For every (width, corner) the harness records the
patched top-1 class and the target probability, for the patch and for a
control: uniform noise of the same size and alpha mask from a seeded key.

Metrics (per width, per corner, and pooled over corners):

* ``success_rate``: fraction of eligible images whose top-1 becomes the
  target. Eligible: reference class is not the target and the clean top-1 is
  not already the target.
* ``changed_rate``: fraction of eligible images correctly classified when
  clean (top-1 == reference class) whose top-1 is no longer the reference.
* ``mean_target_prob``: mean softmax probability of the target (eligible).

The reference class of an image is its label when known (``<wnid>_`` names)
and otherwise its clean top-1.

  config = patch_attack.PatchAttackConfig(target=labels.lookup("wok"))
  patch = patch_attack.load_patch("noodles.jpg", box=(0.1, 0.1, 0.9, 0.9))
  result = patch_attack.run(model, params, paths, patch, config, references)
  summary = patch_attack.summarize(result)
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from atlasjax import images as images_lib
from atlasjax import plotting
from atlasjax.models import base

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
DEFAULT_WIDTHS = (0.2, 0.4, 0.7)
KINDS = ("patch", "control")
LOGITS = "logits"
DEFAULT_BATCH_SIZE = 16


@dataclasses.dataclass(frozen=True)
class PatchAttackConfig:
  """How to attack.

  Attributes:
    target: class index the patch should produce.
    widths: patch widths as fractions of the image width.
    corners: subset of :data:`CORNERS`.
    margin: gap in pixels between the patch and the image edges.
    seed: seeds the noise control patches (one per width).
    batch_size: images per forward pass (the last batch is padded, so there
      is one compilation per image size).
  """
  target: int
  widths: tuple[float, ...] = DEFAULT_WIDTHS
  corners: tuple[str, ...] = CORNERS
  margin: int = 0
  seed: int = 0
  batch_size: int = DEFAULT_BATCH_SIZE

  def __post_init__(self):
    bad = [c for c in self.corners if c not in CORNERS]
    if bad:
      raise ValueError(f"Unknown corners {bad}; use {CORNERS}.")
    if not self.widths or not all(0 < w <= 1 for w in self.widths):
      raise ValueError(f"widths must lie in (0, 1], got {self.widths}")


def sweep_widths(base_widths: Sequence[float] = DEFAULT_WIDTHS,
                 steps: int = 8, low: float = 0.1,
                 high: float = 0.8) -> tuple[float, ...]:
  """``base_widths`` plus ``steps`` evenly spaced widths in [low, high], sorted."""
  sweep = np.linspace(low, high, steps) if steps else []
  return tuple(sorted({round(float(w), 4) for w in (*base_widths, *sweep)}))


# ---------------------------------------------------------------------------
# Patches.

def load_patch(path: os.PathLike | str,
               box: Sequence[float] | None = None) -> np.ndarray:
  """``[h, w, 4]`` RGBA float patch in [0, 1] from an image file.

  ``box = (left, top, right, bottom)`` crops first: fractions of the size if
  all values are <= 1, else pixels. Files without alpha get alpha 1.
  """
  try:
    with Image.open(path) as image:
      image.load()
      has_alpha = image.mode in ("RGBA", "LA") or "transparency" in image.info
      image = image.convert("RGBA") if has_alpha else images_lib.to_rgb(
          image).convert("RGBA")
  except (OSError, ValueError) as e:
    raise images_lib.ImageReadError(f"Cannot read patch {path}: {e}") from e
  if box is not None:
    if len(box) != 4:
      raise ValueError(f"box must be (left, top, right, bottom), got {box}")
    w, h = image.size
    if all(0 <= v <= 1 for v in box):
      box = (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
    box = tuple(int(round(v)) for v in box)
    if not (0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h):
      raise ValueError(f"box {box} is empty or outside the {w}x{h} image")
    image = image.crop(box)
  return np.asarray(image, np.float32) / 255.0


def patch_shape(patch_hw: tuple[int, int], width_fraction: float,
                image_hw: tuple[int, int]) -> tuple[int, int]:
  """``(h, w)`` in pixels of a patch ``width_fraction`` of the image wide."""
  ph, pw = patch_hw
  h, w = image_hw
  width = max(1, min(w, int(round(width_fraction * w))))
  height = max(1, min(h, int(round(width * ph / pw))))
  return height, width


def resize_patch(patch: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """RGBA patch resized (antialiased bilinear) to ``shape = (h, w)``."""
  return np.clip(plotting.resize(patch, shape), 0.0, 1.0)


def noise_patch(key, like: np.ndarray) -> jax.Array:
  """Uniform RGB noise with ``like``'s shape and alpha channel (the control)."""
  rgb = jax.random.uniform(key, like.shape[:2] + (3,))
  return jnp.concatenate([rgb, jnp.asarray(like[..., 3:])], axis=-1)


def corner_offset(corner: str, patch_hw: tuple[int, int],
                  image_hw: tuple[int, int], margin: int = 0) -> tuple[int, int]:
  """``(top, left)`` of a patch placed in ``corner``."""
  ph, pw = patch_hw
  h, w = image_hw
  if corner not in CORNERS:
    raise ValueError(f"Unknown corner {corner!r}; use {CORNERS}.")
  top = margin if corner.startswith("top") else h - ph - margin
  left = margin if corner.endswith("left") else w - pw - margin
  if top < 0 or left < 0:
    raise ValueError(f"patch {patch_hw} with margin {margin} does not fit "
                     f"in {image_hw}")
  return top, left


@jax.jit
def paste(images, patch, top, left):
  """Composites an RGBA ``patch [h, w, 4]`` onto ``images [B, H, W, 3]``.

  ``top``/``left`` may be traced; the patch shape is static.
  """
  b = images.shape[0]
  h, w = patch.shape[:2]
  region = jax.lax.dynamic_slice(images, (0, top, left, 0), (b, h, w, 3))
  alpha = patch[..., 3:]
  blended = alpha * patch[..., :3] + (1 - alpha) * region
  return jax.lax.dynamic_update_slice(images, blended, (0, top, left, 0))


@functools.partial(jax.jit, static_argnames=("model",))
def _predict(model, params, images, target):
  logits = model.apply(params, images, layers=(LOGITS,))[LOGITS]
  probs = jax.nn.softmax(logits, axis=-1)
  return jnp.argmax(probs, axis=-1), probs[:, target]


# ---------------------------------------------------------------------------
# Running the attack.

@dataclasses.dataclass(frozen=True)
class AttackResult:
  """Raw per-image outcomes; see :func:`summarize`.

  Attributes:
    config: the configuration.
    paths: readable images, in order.
    references: ``[N]`` reference class per image.
    clean_top1, clean_target_prob: ``[N]`` without a patch.
    top1, target_prob: ``[kinds, widths, corners, N]`` with a patch
      (``kinds`` = :data:`KINDS`).
    patch_shapes: ``(h, w)`` in pixels per width.
  """
  config: PatchAttackConfig
  paths: tuple[str, ...]
  references: np.ndarray
  clean_top1: np.ndarray
  clean_target_prob: np.ndarray
  top1: np.ndarray
  target_prob: np.ndarray
  patch_shapes: tuple[tuple[int, int], ...]
  report: images_lib.ReadReport


def _pad(images: np.ndarray, size: int) -> np.ndarray:
  if len(images) == size:
    return images
  pad = np.zeros((size - len(images),) + images.shape[1:], images.dtype)
  return np.concatenate([images, pad])


def run(model: base.Model, params, paths: Sequence[str], patch: np.ndarray,
        config: PatchAttackConfig,
        references: Sequence[int | None] | None = None,
        load=images_lib.load_eval, warn: bool = True) -> AttackResult:
  """Pastes ``patch`` (RGBA, from :func:`load_patch`) on every image.

  Args:
    references: reference class per path (None entries, or None overall:
      use the clean top-1).
  """
  paths = list(paths)
  references = list(references) if references is not None else [None] * len(paths)
  if len(references) != len(paths):
    raise ValueError("references must have one entry per path")
  if patch.ndim != 3 or patch.shape[-1] != 4:
    raise ValueError(f"patch must be [h, w, 4] RGBA, got {patch.shape}")
  key = jax.random.PRNGKey(config.seed)
  report = images_lib.ReadReport()
  kept, refs, clean_top1, clean_prob, top1, prob = [], [], [], [], [], []
  variants = None
  shapes = None
  for batch in images_lib.iter_batches(paths, config.batch_size, load=load,
                                       report=report, warn=warn):
    n = len(batch.paths)
    image_hw = batch.images.shape[1:3]
    if variants is None:
      shapes = tuple(patch_shape(patch.shape[:2], w, image_hw)
                     for w in config.widths)
      variants = []
      for i, shape in enumerate(shapes):
        real = jnp.asarray(resize_patch(patch, shape))
        variants.append((real, noise_patch(jax.random.fold_in(key, i), real)))
    x = jnp.asarray(_pad(batch.images, config.batch_size))
    t, p = jax.device_get(_predict(model, params, x, config.target))
    clean_top1.append(t[:n])
    clean_prob.append(p[:n])
    out_t = np.zeros((len(KINDS), len(shapes), len(config.corners), n), np.int64)
    out_p = np.zeros(out_t.shape, np.float32)
    for wi, (shape, pair) in enumerate(zip(shapes, variants)):
      for ci, corner in enumerate(config.corners):
        top, left = corner_offset(corner, shape, image_hw, config.margin)
        for ki, patch_k in enumerate(pair):
          t, p = jax.device_get(_predict(model, params,
                                         paste(x, patch_k, top, left),
                                         config.target))
          out_t[ki, wi, ci], out_p[ki, wi, ci] = t[:n], p[:n]
    top1.append(out_t)
    prob.append(out_p)
    kept += batch.paths
    refs += [references[i] if references[i] is not None else int(t0)
             for i, t0 in zip(batch.indices, clean_top1[-1])]
  if not kept:
    raise ValueError("No readable images: " + report.summary())
  return AttackResult(config, tuple(kept), np.asarray(refs),
                      np.concatenate(clean_top1), np.concatenate(clean_prob),
                      np.concatenate(top1, axis=-1),
                      np.concatenate(prob, axis=-1), shapes, report)


def _rates(top1, prob, references, eligible, correct, target) -> dict:
  """Metrics for ``top1``/``prob`` ``[..., N]``, pooled over leading axes."""
  e = np.broadcast_to(eligible, top1.shape)
  c = np.broadcast_to(correct, top1.shape)
  ref = np.broadcast_to(references, top1.shape)
  n_e, n_c = int(e.sum()), int(c.sum())
  return {
      "success_rate": float((top1 == target)[e].mean()) if n_e else None,
      "changed_rate": float((top1 != ref)[c].mean()) if n_c else None,
      "mean_target_prob": float(prob[e].mean()) if n_e else None,
      "n_eligible": n_e, "n_correct": n_c,
  }


def summarize(result: AttackResult) -> dict:
  """JSON-ready metrics per kind and width, pooled and per corner."""
  config = result.config
  target = config.target
  eligible = (result.references != target) & (result.clean_top1 != target)
  correct = eligible & (result.clean_top1 == result.references)
  summary = {
      "target": target,
      "n_images": len(result.paths),
      "n_eligible": int(eligible.sum()),
      "n_clean_correct": int(correct.sum()),
      "skipped": result.report.skipped,
      "corners": list(config.corners),
      "widths": list(config.widths),
      "seed": config.seed,
      "clean": {
          "mean_target_prob": float(result.clean_target_prob[eligible].mean())
          if eligible.any() else None,
          "reference_accuracy": float(
              (result.clean_top1 == result.references).mean()),
      },
  }
  for ki, kind in enumerate(KINDS):
    rows = []
    for wi, width in enumerate(config.widths):
      row = {"width": width, "patch_px": list(result.patch_shapes[wi])}
      row.update(_rates(result.top1[ki, wi], result.target_prob[ki, wi],
                        result.references, eligible, correct, target))
      row["by_corner"] = {
          corner: _rates(result.top1[ki, wi, ci], result.target_prob[ki, wi, ci],
                         result.references, eligible, correct, target)
          for ci, corner in enumerate(config.corners)}
      rows.append(row)
    summary[kind] = rows
  return summary


def save_plot(summary: dict, path, title: str | None = None):
  """Success rate, changed rate and target probability vs patch width."""
  plt = plotting.plt
  metrics = (("success_rate", "top-1 = target"),
             ("changed_rate", "top-1 changed from true class"),
             ("mean_target_prob", "mean target probability"))
  fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6))
  try:
    styles = {"patch": ("tab:red", "-"), "control": ("tab:gray", "--")}
    for ax, (metric, label) in zip(axes, metrics):
      for kind in KINDS:
        colour, line = styles[kind]
        widths = [r["width"] for r in summary[kind]]
        pooled = [np.nan if r[metric] is None else r[metric]
                  for r in summary[kind]]
        ax.plot(widths, pooled, line, color=colour, marker="o", lw=2,
                label=f"{kind} (all corners)")
        for corner in summary["corners"]:
          values = [np.nan if r["by_corner"][corner][metric] is None
                    else r["by_corner"][corner][metric] for r in summary[kind]]
          ax.plot(widths, values, line, color=colour, lw=0.6, alpha=0.4)
      ax.set_xlabel("patch width / image width")
      ax.set_ylabel(label)
      ax.set_ylim(-0.02, 1.02)
      ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
      fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
  finally:
    plt.close(fig)
  return path
