"""An offline, Microscope-style browser of every unit of a layer.

OpenAI Microscope shows, for each unit of a network, its feature
visualization, its dataset examples and its strongest connections. This
package builds the same for any atlasjax model, as static files:

* :func:`build` renders every channel of the chosen layers with the batched
  renderer (resumable chunks), collects the top dataset examples of those
  layers and their neighbours in one streaming pass, and computes the
  expanded weights between adjacent unit layers (:mod:`atlasjax.circuits`);
* :func:`write_site` turns the work directory into ``index.html`` plus
  ``microscope/``: a grid per layer, a page per unit, links to its strongest
  inputs and outputs (walk a circuit by clicking), search by unit id.

The site reuses the atlas viewer's approach (:mod:`atlasjax.viewer`): no
server, no external request, data in ``<script>``-loaded files.
"""

from atlasjax.microscope.pipeline import (MicroscopeConfig, MicroscopeError, build,
                                       check_renders, layer_pairs, load_renders,
                                       render_layer, site_layers, unit_family)
from atlasjax.microscope.site import write_site

__all__ = ["MicroscopeConfig", "MicroscopeError", "build", "write_site",
           "site_layers", "layer_pairs", "render_layer", "load_renders",
           "check_renders", "unit_family"]
