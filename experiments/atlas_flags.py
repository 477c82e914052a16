"""Flags shared by the atlas scripts (collect, layout, render_atlas, atlas).

Each script imports this module to define the flags, then builds frozen
config dataclasses from them; the library itself never reads FLAGS.
"""

from absl import flags

import script_setup
from atlasjax import data as data_lib
from atlasjax import labels as labels_lib
from atlasjax import models
from atlasjax.atlas import collect
from atlasjax.atlas import layout
from atlasjax.atlas import pipeline
from atlasjax.atlas import render_atlas

WORKDIR = flags.DEFINE_string("workdir", "workdir/atlas_mixed4c",
                              "Work directory for shards, layout and atlas.")
IMAGES = flags.DEFINE_string(
    "images", None, "Folder of photos (recursive). Default: the sample photos "
    "under $ATLASJAX_DATA/imagenet-sample.")
DATA = flags.DEFINE_string("data", None, "Data root (default $ATLASJAX_DATA).")
MODEL = flags.DEFINE_string("model", models.DEFAULT_MODEL, "Model name.")
SEED = flags.DEFINE_integer("seed", 0, "Seed for sampling, UMAP and icons.")
# Collect.
LAYERS = flags.DEFINE_list("layers", ["mixed4c"], "Layers to collect; the first "
                           "is the main atlas.")
CROPS = flags.DEFINE_integer("crops_per_image", 4,
                             "Random crops per image (1 = the centre crop).")
CROP_SCALE = flags.DEFINE_list("crop_scale", ["0.1", "1.0"],
                               "Crop area fraction range.")
CROP_ASPECT = flags.DEFINE_list("crop_aspect", ["0.75", "1.3333"],
                                "Crop aspect ratio range.")
IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Network input size.")
ATTRIBUTIONS = flags.DEFINE_boolean("attributions", True,
                                    "Store per-class attributions.")
BATCH = flags.DEFINE_integer("batch_size", 32, "Forward-pass batch size.")
SHARD = flags.DEFINE_integer("shard_images", 128, "Images per shard.")
# Layout.
WHITEN = flags.DEFINE_boolean("whiten", True, "Whiten (S = (AᵀA/N)⁻¹) for icons.")
PCA = flags.DEFINE_integer("pca_dims", None, "PCA dims before UMAP (default off).")
N_NEIGHBORS = flags.DEFINE_integer("n_neighbors", None, "UMAP n_neighbors "
                                   "(default: the paper's preset for the layer).")
MIN_DIST = flags.DEFINE_float("min_dist", None, "UMAP min_dist (default: preset).")
METRIC = flags.DEFINE_string("metric", None, "UMAP metric (default: preset).")
FIT_SAMPLE = flags.DEFINE_integer(
    "fit_sample", None, "Fit UMAP on a seeded subsample of this many vectors "
    "and place the rest with its transform (for 10⁵–10⁶ vectors; default: all).")
# Render.
GRIDS = flags.DEFINE_list("grid_sizes", ["10", "20"],
                          "Grid sizes (the paper used 20,40,80,160).")
MIN_DENSITY = flags.DEFINE_list(
    "min_density", ["6", "10"], "Keep cells with more samples than this: one "
    "value, or one per grid size (paper: 10 for 20×20).")
ICON_SIZE = flags.DEFINE_integer("icon_size", 80, "Icon side in px (paper: 80).")
STEPS = flags.DEFINE_integer("steps", 384, "Optimization steps (paper: 1024).")
ATTEMPTS = flags.DEFINE_integer("attempts", 1, "Attempts per icon, best kept "
                                "(paper: 4).")
COSSIM_POW = flags.DEFINE_float("cossim_pow", render_atlas.DEFAULT_COSSIM_POW,
                                "Cosine power of the icon objective.")
CHUNK = flags.DEFINE_integer("chunk_size", None, "Icons per compiled batch "
                             "(default 64).")
DENSITY_SCALED = flags.DEFINE_boolean("density_scaled", False,
                                      "Scale icons by cell density.")
VIEWER = flags.DEFINE_boolean("viewer", True, "Write the browser viewer.")


def images_folder() -> str:
  return IMAGES.value or str(data_lib.sample_dir(DATA.value))


def load_model():
  script_setup.quiet_logging()   # our notes; not XLA's probe or orbax's
  model, params = models.load(MODEL.value, DATA.value)
  return model, params, labels_lib.load(DATA.value)


def collect_config() -> collect.CollectConfig:
  return collect.CollectConfig(
      layers=tuple(LAYERS.value), seed=SEED.value,
      crops_per_image=CROPS.value,
      crop_scale=tuple(float(v) for v in CROP_SCALE.value),
      crop_aspect=tuple(float(v) for v in CROP_ASPECT.value),
      image_size=IMAGE_SIZE.value, attributions=ATTRIBUTIONS.value,
      batch_size=BATCH.value, shard_images=SHARD.value)


def layout_config(layer: str) -> layout.LayoutConfig:
  return layout.LayoutConfig(
      layer=layer, seed=SEED.value, whiten=WHITEN.value, pca_dims=PCA.value,
      n_neighbors=N_NEIGHBORS.value, min_dist=MIN_DIST.value, metric=METRIC.value,
      fit_sample=FIT_SAMPLE.value)


def atlas_config(layer: str) -> render_atlas.AtlasConfig:
  return render_atlas.AtlasConfig(
      layer=layer, grid_sizes=tuple(int(v) for v in GRIDS.value),
      min_density=tuple(int(v) for v in MIN_DENSITY.value),
      icon_size=ICON_SIZE.value, steps=STEPS.value, attempts=ATTEMPTS.value,
      cossim_pow=COSSIM_POW.value, whiten=WHITEN.value, seed=SEED.value,
      chunk_size=CHUNK.value, density_scaled=DENSITY_SCALED.value)


def pipeline_config() -> pipeline.PipelineConfig:
  layer = LAYERS.value[0]
  return pipeline.PipelineConfig(
      collect=collect_config(), layout=layout_config(layer),
      atlas=atlas_config(layer), viewer=VIEWER.value)
