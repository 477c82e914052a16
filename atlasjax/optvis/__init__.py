"""Feature visualization: objectives, image parameterizations, transforms and
a batched, jitted renderer::

  from atlasjax.optvis import objectives, param, transform, render
  cfg = render.RenderConfig(size=128, steps=512)
  result = render.render(model, params, lambda c: objectives.channel("mixed4a", c),
                         args=jnp.arange(16), config=cfg)

See :mod:`.objectives`, :mod:`.param`, :mod:`.transform` and :mod:`.render`.
"""

from atlasjax.optvis import objectives
from atlasjax.optvis import param
from atlasjax.optvis import render
from atlasjax.optvis import transform

__all__ = ["objectives", "param", "render", "transform"]
