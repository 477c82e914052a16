"""How good is a visualization? Measures of feature-visualization quality.

* :mod:`~atlasjax.quality.psychophysics` — machine psychophysics in Borowski
  et al.'s (ICLR 2021) two-alternative forced choice: given a unit's max and
  min references (synthetic: its visualizations and its negation's; natural:
  its top and bottom photos), which of two held-out query photos drives the
  unit more? A judge network (independent of the one under study) decides;
  accuracy with a bootstrap 95 % interval.
* :mod:`~atlasjax.quality.references` — which photos and renders a unit's
  trials use (seeded reference / query split, extremes, the signed-channel
  render family).
* :mod:`~atlasjax.quality.path` — the path sanity check after Geirhos et al.
  (ICML 2024): are visualizations processed along the same path as the
  unit's natural exemplars, layer by layer, against random photos?
* :mod:`~atlasjax.quality.transfer` — transferability (Fel et al. 2023) and
  activation reached vs the best photo.
* :mod:`~atlasjax.quality.suite` — all of them per unit for a list of units
  and one render configuration (what ``experiments/quality.py`` runs).

Every measure is a function of arrays (embeddings, activations) that a test
can recompute with plain NumPy; the model-facing helpers only produce them.
"""

from atlasjax.quality import path
from atlasjax.quality import psychophysics
from atlasjax.quality import references
from atlasjax.quality import report
from atlasjax.quality import run
from atlasjax.quality import suite
from atlasjax.quality import transfer

__all__ = ["path", "psychophysics", "references", "report", "run", "suite", "transfer"]
