"""Activation atlases: collect, lay out, grid and render (see :mod:`atlasjax.atlas.pipeline`).

``atlasjax.atlas.rerender(workdir, model, params, objective=..., ...)``
re-renders a finished atlas's icons with other icon settings
(:func:`atlasjax.atlas.rebuild.rerender`).
"""


def __getattr__(name: str):
  # Imported on first use: importing the package stays free of JAX.
  if name == "rerender":
    from atlasjax.atlas import rebuild  # pylint: disable=g-import-not-at-top
    return rebuild.rerender
  raise AttributeError(f"module 'atlasjax.atlas' has no attribute {name!r}")
