"""Flags of the atlas scripts (collect, layout, render_atlas, atlas, variants).

One source of defaults: the flags for the job's settings are GENERATED from
the fields of the library's frozen config dataclasses (``CollectConfig``,
``LayoutConfig``, ``AtlasConfig``, ``PipelineConfig``), with those fields'
defaults. ``--config=NAME`` picks a preset (``configs/atlas.py``: ``default``,
``paper``); a flag given on the command line overrides its field in the
preset, and :func:`pipeline_config` returns the fully resolved configuration
(which the run writes next to its outputs, ``run_config.json``). A field
shared by several stages (``seed``, ``whiten``) is one flag setting all of them.
Settings that depend on the network come from ``--model``'s metadata when not
given: ``--layers`` (``model.default_layer``) and ``--image_size``
(``model.input_size``). The library itself never reads FLAGS.
"""

from __future__ import annotations

import dataclasses
import pathlib
import types
import typing

from absl import flags

import cli
from atlasjax import distributed
from atlasjax import labels as labels_lib
from atlasjax import models
from atlasjax.atlas import collect
from atlasjax.atlas import layout
from atlasjax.atlas import pipeline
from atlasjax.atlas import render_atlas
from atlasjax.atlas import run_config
from atlasjax.atlas import variants
from configs import atlas as presets

# Config sections whose fields become flags, in pipeline order.
SECTIONS = {"collect": collect.CollectConfig, "layout": layout.LayoutConfig,
            "atlas": render_atlas.AtlasConfig}
# Fields set from --layers (one layer per stage run), not flags of their own.
DERIVED = frozenset({"layer"})
# Fields whose default comes from the model when the flag is not given.
FROM_MODEL = {
    "layers": lambda model: (model.default_layer,),
    "image_size": lambda model: model.input_size,
}
HELP = {
    "layers": "Layers to collect; the first is the main atlas (default: the "
              "model's default layer).",
    "seed": "Seed for sampling, UMAP and icons.",
    "crops_per_image": "Random crops per image (1 = the centre crop).",
    "crop_scale": "Crop area fraction range.",
    "crop_aspect": "Crop aspect ratio range.",
    "image_size": "Network input size (default: the model's).",
    "attributions": "Store per-class attributions.",
    "batch_size": "Forward-pass batch size.",
    "shard_images": "Images per shard.",
    "loader_threads": "Image-decoding threads per process (grain).",
    "loader_workers": "grain worker processes decoding images (0: threads of "
                      "this process only). Any value gives the same collection.",
    "recursive": "Find photos in sub-folders too.",
    "whiten": "Whiten (S = (AᵀA/N)⁻¹) for the layout and icons.",
    "pca_dims": "PCA dims before UMAP (default off).",
    "n_neighbors": "UMAP n_neighbors (default: the paper's preset for the "
                   "layer's depth).",
    "min_dist": "UMAP min_dist (default: preset).",
    "metric": "UMAP metric (default: preset).",
    "n_epochs": "UMAP epochs (default: umap-learn's).",
    "fit_sample": "Fit UMAP on a seeded subsample of this many vectors and "
                  "place the rest with its transform (for 10⁵–10⁶ vectors).",
    "margin": "Layout normalisation margin.",
    "grid_sizes": "Grid sizes (paper preset: 20,40,80,160).",
    "min_density": "Keep cells with more samples than this: one value, or one "
                   "per grid size.",
    "icon_size": "Icon side in px.",
    "steps": "Optimisation steps per icon.",
    "attempts": "Attempts per icon, best kept.",
    "lr": "Adam learning rate.",
    "cossim_pow": "Cosine power of the icon objective.",
    "objective": "Icon objective: a form (cosine, lucid_notebook), a family "
                 "registered with atlasjax.optvis.registry.register_objective, "
                 "or 'package.module:factory' (factory(layer, whitening=, "
                 "cossim_pow=) -> family direction -> Objective; see "
                 "atlasjax.atlas.icon_objective).",
    "class_ranking": "How cells' top classes and the viewer's shading are "
                     "ranked: support (attribution weighted by the crops' "
                     "predictions) or mean_attribution (the paper's).",
    "transforms": "Icon transforms preset, a registered name or "
                  "'package.module:factory'.",
    "param": "Icon parameterization: fft (Lucid's), maco (Fel et al. 2023), "
             "a registered name or 'package.module:factory'.",
    "chunk_size": "Icons per compiled batch (default 64).",
    "density_scaled": "Scale icons by cell density.",
    "n_examples": "Nearest photos listed per cell.",
    "viewer": "Write the browser viewer.",
}

WORKDIR = flags.DEFINE_string(
    "workdir", None, "Work directory for shards, layout and atlas (default: "
    "workdir/atlas_<layer>, or workdir/<model>_<layer> for other models).")
IMAGES = flags.DEFINE_string(
    "images", None, "Folder of photos (recursive). Default: the sample photos "
    "(local copy under $ATLASJAX_DATA, else downloaded into the cache).")
CONFIG = flags.DEFINE_enum("config", "default", list(presets.PRESETS),
                           "Preset the other flags override (configs/atlas.py).")
MODEL, DATA = cli.MODEL, cli.DATA
# Many processes (jax.distributed; see README "Many hosts"). Unset, JAX's
# variables (JAX_COORDINATOR_ADDRESS, …) or a detected SLURM / Open MPI / TPU
# pod job are used; with none of them the run is one process.
DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "Join a multi-process job: auto (when configured or detected), on, off.")
COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0's coordinator.")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                     "Processes in the job.")
PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                  "This process's index, 0 … num_processes-1.")
LOCAL_DEVICES = flags.DEFINE_list(
    "local_device_ids", None, "Local devices this process uses (e.g. one GPU "
    "per process); default all.")


# ----------------------------------------------------------------------------
# Flags generated from the dataclass fields.

def _scalar(hint) -> type:
  """``int`` for ``int``/``int | None`` etc.; ``str`` for a field that also
  takes Python objects (``objective``: a name on the command line, a family
  in code)."""
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    if len(args) == 1:
      return args[0]
    if str in args:
      return str
  return hint


def _define(name: str, hint, default) -> flags.FlagHolder:
  kind = _scalar(hint)
  text = HELP.get(name, name)
  if name in FROM_MODEL:
    default = None
  if typing.get_origin(kind) is tuple:
    value = None if default is None else [str(v) for v in default]
    return flags.DEFINE_list(name, value, text)
  define = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer,
            float: flags.DEFINE_float, str: flags.DEFINE_string}[kind]
  return define(name, default, text)


def _convert(hint, value):
  """A flag's value as the dataclass field wants it (lists → typed tuples)."""
  kind = _scalar(hint)
  if value is None or typing.get_origin(kind) is not tuple:
    return value
  args = typing.get_args(kind)
  element = args[0]
  try:
    return tuple(element(v) for v in value)
  except ValueError:
    raise ValueError(f"expected {element.__name__} values, got {value}") from None


def _fields():
  """``{name: (hint, default, [section, ...])}`` over every config section."""
  out: dict[str, tuple] = {}
  classes = dict(SECTIONS, pipeline=pipeline.PipelineConfig)
  for section, cls in classes.items():
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
      if field.name in DERIVED or field.name in SECTIONS:
        continue
      default = getattr(cls(), field.name)
      if field.name in out:
        hint, shared_default, where = out[field.name]
        assert shared_default == default, (field.name, shared_default, default)
        where.append(section)
      else:
        out[field.name] = (hints[field.name], default, [section])
  return out


FIELDS = _fields()
FIELD_FLAGS = {name: _define(name, hint, default)
               for name, (hint, default, _) in FIELDS.items()}


def pipeline_config(model: models.Model,
                    script_defaults: dict | None = None
                    ) -> pipeline.PipelineConfig:
  """The resolved configuration: preset ← script defaults ← given flags.

  ``script_defaults`` are a script's own defaults for some fields (class
  atlases default to one 8×8 grid); flags on the command line win over them.
  """
  config = presets.get(CONFIG.value)
  sections = {name: dataclasses.asdict(getattr(config, name))
              for name in SECTIONS}
  sections["pipeline"] = {"viewer": config.viewer}
  for name, (hint, _, where) in FIELDS.items():
    holder = FIELD_FLAGS[name]
    if holder.present:
      try:
        value = _convert(hint, holder.value)
      except ValueError as e:
        raise ValueError(f"--{name}: {e}") from None
    elif script_defaults and name in script_defaults:
      value = script_defaults[name]
    elif name in FROM_MODEL:
      value = FROM_MODEL[name](model)
    else:
      continue
    for section in where:
      sections[section][name] = value
  layers = model.check_layers(sections["collect"]["layers"])
  if not layers:
    raise ValueError("--layers is empty; name at least one layer.")
  cli.check_size(model, sections["collect"]["image_size"], "--image_size")
  for name in ("layout", "atlas"):
    sections[name]["layer"] = layers[0]
  return pipeline.PipelineConfig(
      collect=collect.CollectConfig(**sections["collect"]),
      layout=layout.LayoutConfig(**sections["layout"]),
      atlas=render_atlas.AtlasConfig(**sections["atlas"]),
      viewer=sections["pipeline"]["viewer"])


def given_atlas_settings() -> dict:
  """The icon settings (AtlasConfig fields) given on the command line, as
  the dataclass wants them: what a re-render changes."""
  out = {}
  for name, (hint, _, where) in FIELDS.items():
    if "atlas" in where and FIELD_FLAGS[name].present:
      try:
        out[name] = _convert(hint, FIELD_FLAGS[name].value)
      except ValueError as e:
        raise ValueError(f"--{name}: {e}") from None
  return out


def workdir(model: models.Model, config: pipeline.PipelineConfig) -> pathlib.Path:
  """``--workdir``, or a default named after the model and main layer."""
  if WORKDIR.value:
    return pathlib.Path(WORKDIR.value)
  layer = config.collect.layers[0]
  if model.name == models.DEFAULT_MODEL:
    return pathlib.Path("workdir") / f"atlas_{layer}"
  return pathlib.Path("workdir") / f"{model.name}_{layer}"


def images_folder() -> str:
  return str(cli.image_folder(IMAGES.value))


def init_distributed() -> distributed.ProcessLayout:
  """Joins the multi-process job, if any; call before anything uses JAX."""
  return distributed.initialize(
      COORDINATOR.value, NUM_PROCESSES.value, PROCESS_ID.value,
      [int(i) for i in LOCAL_DEVICES.value] if LOCAL_DEVICES.value else None,
      mode=DISTRIBUTED.value)


def load_model():
  """``(model, params, labels)`` of ``--model``."""
  model, params = cli.load_model()
  return model, params, labels_lib.load(DATA.value)


def prepare_variant(variant, config: pipeline.PipelineConfig,
                    model: models.Model, params, labels: labels_lib.Labels,
                    workdir: pathlib.Path) -> None:
  """Checks a class or comparison atlas's settings, then records and collects.

  Every setting (and the collection it would start) is validated before the
  run record is written: a refused run leaves the work directory as it found
  it. A finished collection is used as it is; only the model must match.
  """
  variants.check_config(variant, model, params)
  variants.check_collection(config.collect, model, params, images_folder(),
                            workdir)
  run_config.record(workdir, {"model": model.name})
  variants.ensure_collection(config.collect, model, params, images_folder(),
                             workdir, labels)
