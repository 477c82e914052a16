"""Per-unit quality scores on the Microscope's pages.

:func:`add_quality_scores` reads a ``quality.json`` written by
``experiments/quality.py`` (:mod:`atlasjax.quality`) and adds to every scored
unit of a written site its machine-psychophysics accuracies (synthetic and
natural references, with their 95 % intervals) and its path check, per
parameterization. The unit page shows them in a table; the layer page can
sort its units by any of them. Units that were not scored show nothing.
"""

from __future__ import annotations

import os
import pathlib
from typing import Mapping

from atlasjax import workdir as workdir_lib
from atlasjax.microscope import site


def _scores(record: Mapping) -> dict:
  """The compact per-unit entry the site reads (``s``/``n``: accuracies,
  ``sc``/``nc``: their intervals, ``p``: path check, ``t``: trials)."""
  return {"s": record["synthetic"], "sc": record["ci95"]["synthetic"],
          "n": record["natural"], "nc": record["ci95"]["natural"],
          "p": record["path_check"], "t": record["trials"]}


def layer_scores(result: Mapping, layer: str) -> dict[int, dict]:
  """``{unit: {param: scores}}`` of ``layer`` in a quality result."""
  out: dict[int, dict] = {}
  for param, block in result["params"].items():
    for record in block["units"].values():
      if record["layer"] == layer:
        out.setdefault(int(record["unit"]), {})[param] = _scores(record)
  return out


def add_quality_scores(workdir: os.PathLike | str,
                       quality: os.PathLike | str | Mapping) -> list[str]:
  """Adds the scores of ``quality`` (a result or its ``quality.json``) to the site.

  Returns the site layers that got scores. Raises ``ValueError`` when the
  result scores none of the site's layers.
  """
  result = (quality if isinstance(quality, Mapping)
            else workdir_lib.read_json(pathlib.Path(quality)))
  layers = sorted({r["layer"] for b in result["params"].values()
                   for r in b["units"].values()})
  updated = []
  for layer in layers:
    data = site.read_layer_data(workdir, layer)
    if data is None:
      continue
    for unit, scores in layer_scores(result, layer).items():
      if unit < len(data["units"]):
        data["units"][unit]["q"] = scores
    data["quality"] = {"params": list(result["params"]), "judge": result["judge"],
                       "model": result["model"]}
    site.write_layer_data(workdir, layer, data)
    updated.append(layer)
  if not updated:
    raise ValueError(f"the quality result scores layers {', '.join(layers)}; the "
                     f"site in {workdir} has none of them: score a layer the "
                     "Microscope shows.")
  return updated


__all__ = ["add_quality_scores", "layer_scores"]
