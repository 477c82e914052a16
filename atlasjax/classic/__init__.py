"""Classic CNN visualizations (lecture "Visualizing ConvNets").

* :mod:`.attribution`: saliency, SmoothGrad, CAM, Grad-CAM.
* :mod:`.filters`: first-layer filters as RGB tiles.
* :mod:`.montage`: channel montages of one image's activations.
* :mod:`.examples`: dataset examples (top-k crops) and activation spectra.

Image helpers (overlays, grids, PNGs) live in :mod:`atlasjax.plotting`.
"""

from atlasjax.classic import attribution
from atlasjax.classic import examples
from atlasjax.classic import filters
from atlasjax.classic import montage

__all__ = ["attribution", "examples", "filters", "montage"]
