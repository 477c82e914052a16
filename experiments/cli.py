"""What every model-using experiment script shares: --model, --data, checks.

A script defines its own flags, then ends with ``cli.run(main)`` instead of
``app.run(main)`` (see :mod:`cli_base`: bad input ends in one line,
``error: <message>``, exit status 2, never a traceback). This module adds

* ``--model`` (any name in ``atlasjax.models.available()``), ``--data`` and
  ``--weights`` (a ViT's checkpoint file; ViTs ship no weights);
  :func:`load_model` loads the pair and quietens other libraries' logging;
* defaults that depend on the network (layer, CAM layer, input size) taken
  from the model's metadata (:func:`layer_or_default`, :func:`spatial_layer`);
* checks made before any work, each raising a ValueError that names the flag
  and the fix: :func:`check_size`, :func:`output_dir`, :func:`image_folder`,
  :func:`image_file`.
"""

from __future__ import annotations

import pathlib

from absl import flags

import script_setup
from atlasjax import compilation_cache
from atlasjax import data as data_lib
from atlasjax import images as images_lib
from atlasjax import models
from cli_base import EXIT_BAD_INPUT, fail, guard, output_dir, parse, run

MODEL = flags.DEFINE_string(
    "model", models.DEFAULT_MODEL,
    f"Network: one of {', '.join(models.available())}.")
DATA = flags.DEFINE_string("data", None, "Data root (default: $ATLASJAX_DATA, "
                           "then the user cache).")
WEIGHTS = flags.DEFINE_string(
    "weights", None, "Weights file of a ViT --model (a big_vision/AugReg "
    ".npz); ViTs ship no weights. GoogLeNet/EfficientNet load theirs.")


COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache", None,
    "Folder of JAX's persistent compilation cache, or 'off' (default: "
    f"${compilation_cache.ENV_VAR}, else the user cache folder).")


def load_model():
  """``(model, params)`` of ``--model`` from ``--data`` / ``--weights``; quiet
  logging; the compilation cache of ``--compilation_cache``."""
  script_setup.quiet_logging()
  if COMPILATION_CACHE.value:
    compilation_cache.configure(COMPILATION_CACHE.value)
  return models.load(MODEL.value, DATA.value, WEIGHTS.value)


def get_model():
  """The ``--model`` (metadata and apply, no weights)."""
  return models.get(MODEL.value)


def layer_or_default(model, name: str | None) -> str:
  """``name`` checked against the model, or the model's default layer."""
  name = name or model.default_layer
  if name is None:
    raise ValueError(f"Model {model.name!r} declares no default layer; pass "
                     "--layer.")
  model.layer(name)
  return name


def spatial_layer(model, name: str | None, flag: str = "--layer") -> str:
  name = layer_or_default(model, name)
  if not model.layer(name).spatial:
    raise ValueError(f"{flag}={name} has no spatial extent; pick a "
                     f"convolutional layer of {model.name}, e.g. "
                     f"{model.default_layer}.")
  return name


def check_size(model, size: int, flag: str) -> int:
  """``size`` if the model accepts inputs that large, else a clear error."""
  if size < model.min_size:
    raise ValueError(f"{flag}={size} is below the smallest input {model.name} "
                     f"accepts ({model.min_size} px); use {flag}="
                     f"{model.min_size} or more.")
  return size


def image_folder(path: str | None) -> pathlib.Path:
  """``--images`` (or the sample photos), checked to hold at least one photo."""
  folder = pathlib.Path(path) if path else data_lib.sample_dir(DATA.value)
  if not folder.is_dir():
    raise ValueError(f"--images={folder} is not a folder; pass a folder of "
                     "photos (searched recursively).")
  try:
    found = images_lib.list_images(folder)
  except PermissionError as e:
    raise ValueError(f"Cannot read --images={folder} ({e.strerror}).") from None
  if not found:
    raise ValueError(f"--images={folder} holds no photos (looked for "
                     f"{', '.join(images_lib.IMAGE_EXTENSIONS)}); pass a folder "
                     "of photos.")
  return folder


def image_file(path: str) -> pathlib.Path:
  """``--image``, checked to exist and decode (ImageReadError is a ValueError)."""
  file = pathlib.Path(path)
  if not file.is_file():
    raise ValueError(f"--image={path} is not a file; pass a photo.")
  images_lib.load_pil(file)
  return file


__all__ = ["MODEL", "DATA", "WEIGHTS", "EXIT_BAD_INPUT", "check_size", "fail", "get_model",
           "guard", "image_file", "image_folder", "layer_or_default",
           "load_model", "output_dir", "parse", "run", "spatial_layer"]
