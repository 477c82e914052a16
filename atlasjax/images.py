"""Reading images robustly and preparing them for a model.

:func:`read_image` returns an RGB float32 ``[H, W, 3]`` array in [0, 1] from any
file Pillow decodes (JPEG, PNG, WebP, BMP, …), converting grayscale, palette,
CMYK, 16-bit and RGBA (composited on white) images to RGB and honouring the EXIF
orientation. A corrupt or truncated file raises :class:`ImageReadError` with
the path. :func:`iter_batches` streams a list of files as batches for a model,
decoding on a background thread pool so decoding overlaps the forward pass; it
skips unreadable files, counts them and reports them in its
:class:`ReadReport` instead of stopping the run.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
import sys
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif",
                    ".tiff", ".ppm", ".pgm")
EVAL_RESIZE = 256
EVAL_CROP = 224
_WHITE = (255, 255, 255)


class ImageReadError(ValueError):
  """A file that is not a readable image."""


def list_images(folder: os.PathLike | str, recursive: bool = True) -> list[str]:
  """Image files under ``folder`` (by extension), sorted by relative path."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise FileNotFoundError(f"Image folder {folder} does not exist or is not a "
                            "folder; pass --images=DIR with a folder of photos.")
  pattern = "**/*" if recursive else "*"
  files = [p for p in folder.glob(pattern)
           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
  return sorted(str(p) for p in files)


def to_rgb(image: Image.Image) -> Image.Image:
  """Any Pillow image as 8-bit RGB (alpha composited on white)."""
  image = ImageOps.exif_transpose(image)
  if image.mode in ("RGBA", "LA") or (image.mode == "P" and
                                      "transparency" in image.info):
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, _WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background
  if image.mode in ("I;16", "I;16B", "I;16L", "I"):
    # 16-bit samples: 65535 is white whatever the image holds (scaling by the
    # image's own maximum would turn a dark or uniform image white). Only
    # 32-bit "I" data beyond the 16-bit range is scaled by its maximum.
    array = np.asarray(image, dtype=np.float64)
    scale = 255.0 / max(array.max(), 65535.0)
    image = Image.fromarray(np.rint(array * scale).clip(0, 255).astype(np.uint8))
  return image.convert("RGB")


def load_pil(path: os.PathLike | str) -> Image.Image:
  """Opens and fully decodes ``path`` as RGB; raises ImageReadError if corrupt."""
  try:
    with Image.open(path) as image:
      image.load()
      return to_rgb(image)
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise ImageReadError(f"Cannot read image {path}: {e}") from e


def read_image(path: os.PathLike | str) -> np.ndarray:
  """``[H, W, 3]`` float32 RGB in [0, 1]."""
  return np.asarray(load_pil(path), dtype=np.float32) / 255.0


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
  """Bilinear resize so the shorter side is ``size`` (aspect ratio kept)."""
  w, h = image.size
  scale = size / min(w, h)
  new = (max(size, round(w * scale)), max(size, round(h * scale)))
  if new == (w, h):
    return image
  return image.resize(new, Image.BILINEAR)


def center_crop(image: Image.Image, size: int) -> Image.Image:
  """The central ``size`` × ``size`` square."""
  w, h = image.size
  left, top = (w - size) // 2, (h - size) // 2
  return image.crop((left, top, left + size, top + size))


def eval_preprocess(image: Image.Image, resize: int = EVAL_RESIZE,
                    crop: int = EVAL_CROP) -> np.ndarray:
  """Standard evaluation preprocessing: shorter side to 256, centre 224 crop."""
  image = center_crop(resize_shorter(image, resize), crop)
  return np.asarray(image, dtype=np.float32) / 255.0


def load_eval(path: os.PathLike | str, resize: int = EVAL_RESIZE,
              crop: int = EVAL_CROP) -> np.ndarray:
  """A photo with the standard evaluation preprocessing: ``[crop, crop, 3]`` RGB in [0, 1]."""
  return eval_preprocess(load_pil(path), resize, crop)


def eval_sizes(input_size: int) -> tuple[int, int]:
  """``(resize, crop)`` of the standard evaluation for a model's input size.

  The ImageNet convention, 256 → 224, scaled: the shorter side goes to
  ``round(input_size · 256 / 224)`` and the centre ``input_size`` is kept.
  """
  return round(input_size * EVAL_RESIZE / EVAL_CROP), input_size


def load_for_model(path: os.PathLike | str, input_size: int) -> np.ndarray:
  """``path`` preprocessed for a model trained at ``input_size`` px."""
  return load_eval(path, *eval_sizes(input_size))


@dataclasses.dataclass
class ReadReport:
  """What a batch reader saw: how many files were read and which were not."""
  read: int = 0
  failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)

  @property
  def skipped(self) -> int:
    """How many files could not be read."""
    return len(self.failed)

  def summary(self) -> str:
    """One line: images read, skipped, and the first few reasons."""
    text = f"read {self.read} images, skipped {self.skipped} unreadable"
    if self.failed:
      text += ": " + "; ".join(f"{p} ({why})" for p, why in self.failed[:5])
      if len(self.failed) > 5:
        text += f"; … {len(self.failed) - 5} more"
    return text


@dataclasses.dataclass
class Batch:
  images: np.ndarray          # [B, H, W, 3] float32 in [0, 1] (or collated)
  indices: np.ndarray         # positions in the input file list
  paths: list[str]


def iter_batches(paths: Sequence[str], batch_size: int,
                 load: Callable[[str], np.ndarray] = load_eval,
                 report: ReadReport | None = None, workers: int | None = None,
                 warn: bool = True, collate: Callable = np.stack
                 ) -> Iterator[Batch]:
  """Streams ``paths`` as batches, decoding ahead on a thread pool.

  Unreadable files are skipped, counted in ``report`` and warned about; at most
  two batches are decoded ahead, so memory is bounded for any number of files.
  ``collate`` turns the list of ``load`` results into ``Batch.images``.
  """
  report = report if report is not None else ReadReport()
  workers = workers or min(8, (os.cpu_count() or 2))

  def safe_load(i):
    try:
      return i, load(paths[i]), None
    except ImageReadError as e:
      return i, None, str(e.__cause__ or e)

  chunks = [range(s, min(s + batch_size, len(paths)))
            for s in range(0, len(paths), batch_size)]
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = [pool.map(safe_load, chunk) for chunk in chunks[:2]]
    for n in range(len(chunks)):
      results = list(pending.pop(0))
      if n + 2 < len(chunks):
        pending.append(pool.map(safe_load, chunks[n + 2]))
      good = []
      for i, image, error in results:
        if error is not None:
          report.failed.append((paths[i], error))
          if warn:
            print(f"warning: skipping unreadable image {paths[i]}: {error}",
                  file=sys.stderr)
        else:
          good.append((i, image))
      report.read += len(good)
      if good:
        yield Batch(collate([g[1] for g in good]),
                    np.array([g[0] for g in good]), [paths[g[0]] for g in good])
