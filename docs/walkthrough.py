# %% [markdown]
# # atlasjax walk-through: render → atlas → look
#
# A percent-format notebook (open it in Jupyter with jupytext, or in VS Code /
# PyCharm as cells; `python docs/walkthrough.py` runs it top to bottom, and
# `tests/test_walkthrough.py` does so on every test run). Sizes are tiny so
# it runs in a minute on a laptop CPU; the comments say what to raise.

# %%
import pathlib
import tempfile

import jax

from atlasjax import data, labels, models
from atlasjax.atlas import collect, layout, pipeline, render_atlas, result
from atlasjax.optvis import objectives, render

MODEL = "bvlc_googlenet"      # or "efficientnet_lite0", or models.from_flax(...)
PHOTOS = 6                    # the atlas job uses all 800 (1000 downloaded)
STEPS = 16                    # 512 for good renders, 384 for atlas icons
SIZE = 64                     # 128 for renders, 80 for icons

model, params = models.load(MODEL)
model.default_layer, model.layer(model.default_layer)

# %% [markdown]
# ## Render: a family of objectives in one compiled program
# `make(c)` builds item `c`'s objective; the renderer vmaps over the channels.
# Re-running this cell does not recompile: the renderer keys its cache on the
# structure of `make`, not on the identity of the lambda.

# %%
make = lambda c: objectives.channel(model.default_layer, c) - 1e-3 * objectives.total_variation()
config = render.RenderConfig(size=SIZE, steps=STEPS)
rendered = render.render(model, params, make, args=jax.numpy.arange(4),
                         config=config, key=jax.random.PRNGKey(0))
rendered            # shown as a contact sheet (RenderResult._repr_png_)

# %% [markdown]
# ## Atlas: collect → layout → icons, one config object
# `PipelineConfig()` holds the same defaults as `experiments/atlas.py`
# (the scripts' flags are generated from these fields); here they are shrunk.

# %%
photos = pathlib.Path(tempfile.mkdtemp(prefix="atlasjax_photos_"))
for path in sorted(data.sample_dir().glob("*.jpg"))[:PHOTOS]:
  (photos / path.name).symlink_to(path.resolve())
workdir = pathlib.Path(tempfile.mkdtemp(prefix="atlasjax_walkthrough_"))
atlas_config = pipeline.PipelineConfig(
    collect=collect.CollectConfig(layers=(model.default_layer,),
                                  crops_per_image=2, image_size=96),
    layout=layout.LayoutConfig(n_neighbors=4),
    atlas=render_atlas.AtlasConfig(grid_sizes=(2,), min_density=(0,),
                                   icon_size=SIZE, steps=STEPS),
    viewer=False)
pipeline.run(atlas_config, model, params, photos, workdir, labels.load())

# %% [markdown]
# ## Look
# The atlas shows itself; `atlas.grid()` is its `atlas.json` entry, with each
# cell's count, top classes and nearest photos. `run_config.json` beside it
# records every setting; a rerun with other settings is refused.

# %%
atlas = result.Atlas.open(workdir)
cells = atlas.grid()["cells"]
print(atlas, f"{len(cells)} cells; first: count {cells[0]['count']}, "
      f"top classes {cells[0]['top_classes'][:2]}")
atlas
