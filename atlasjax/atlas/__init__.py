"""Activation atlases: collect, lay out, grid and render (see :mod:`atlasjax.atlas.pipeline`)."""
