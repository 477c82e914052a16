"""Per-unit records, per-parameterization summaries, the table and the figure.

The file format of ``quality.json`` (``docs/methods/quality.md``)::

  {"model", "judge", "embedding", "decision_rule", "settings",
   "params": {PARAM: {"summary": {...},
                      "units": {"LAYER:UNIT": {"synthetic", "natural", "trials",
                                               "ci95": {"synthetic", "natural"},
                                               "path_check", "path_curve",
                                               "activation_ratio", "correct", ...}}}}}

Accuracies are fractions of trials; ``ci95`` are percentile-bootstrap 95 %
intervals (seeded); ``correct`` holds each trial's outcome (0 / 1) so a
reader can recompute every number.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from atlasjax.quality import psychophysics
from atlasjax.quality import suite as suite_lib

DECISION_RULE = (
    "each image resized to 224 px; embedding = the judge's last feature map "
    "averaged over space; a trial is correct when query_max's mean cosine "
    "similarity to the max references minus that to the min references "
    "exceeds query_min's")
KINDS = ("synthetic", "natural")


def unit_key(layer: str, unit: int) -> str:
  """``"layer:unit"``, the key of a unit everywhere in ``quality.json``."""
  return f"{layer}:{unit}"


def unit_record(score: suite_lib.UnitScore, paths: Sequence[str], seed: int,
                resamples: int) -> dict:
  """The JSON record of one unit (see the module docstring)."""
  accs = {k: psychophysics.accuracy(getattr(score, k), seed, resamples) for k in KINDS}
  names = lambda idx: [os.path.basename(paths[i]) for i in idx]  # noqa: E731
  ratio = score.reached / score.best_photo if abs(score.best_photo) > 1e-12 else None
  return {
      "layer": score.layer, "unit": score.unit,
      **{k: round(accs[k].accuracy, 4) for k in KINDS},
      "trials": accs["synthetic"].trials,
      "ci95": {k: [round(v, 4) for v in accs[k].ci95] for k in KINDS},
      "path_check": round(score.path.score, 4), "path_curve": score.path.to_json(),
      "activation_reached": round(score.reached, 4),
      "best_photo": round(score.best_photo, 4),
      "activation_ratio": None if ratio is None else round(ratio, 4),
      "correct": {k: [int(v) for v in getattr(score, k)] for k in KINDS},
      "photos": {"ref_max": names(score.trials.ref_max),
                 "ref_min": names(score.trials.ref_min),
                 "query_max": names(score.trials.query_max),
                 "query_min": names(score.trials.query_min)},
  }


def summarize(units: Mapping[str, dict], seed: int, resamples: int) -> dict:
  """Pooled accuracy over every trial of ``units`` (bootstrap 95 % interval),
  mean path check and median activation ratio."""
  out = {"units": len(units)}
  for kind in KINDS:
    correct = np.concatenate([np.asarray(u["correct"][kind]) for u in units.values()])
    acc = psychophysics.accuracy(correct, seed, resamples)
    out[kind] = round(acc.accuracy, 4)
    out[f"{kind}_ci95"] = [round(v, 4) for v in acc.ci95]
    out["trials"] = acc.trials
  paths = [u["path_check"] for u in units.values() if np.isfinite(u["path_check"])]
  ratios = [u["activation_ratio"] for u in units.values() if u["activation_ratio"] is not None]
  out["path_check"] = round(float(np.mean(paths)), 4) if paths else None
  out["activation_ratio_median"] = round(float(np.median(ratios)), 4) if ratios else None
  return out


def by_layer(units: Mapping[str, dict]) -> dict[str, dict]:
  """``units`` grouped by their layer."""
  groups: dict[str, dict] = {}
  for key, record in units.items():
    groups.setdefault(record["layer"], {})[key] = record
  return groups


def compare(result: Mapping, param: str, baseline: str, *,
            layer: str | None = None) -> dict:
  """Is ``param`` better than ``baseline``? Paired over the units both scored.

  Per unit, the difference of synthetic accuracy (same trials, same queries)
  and of path check; their means with percentile-bootstrap 95 % intervals
  over *units* (the trials of a unit are not independent draws across
  parameterizations: the queries are shared), and how many units each side
  wins. ``layer`` restricts to one layer.

  Returns:
    A dict with ``param``, ``baseline``, ``units`` and, under ``synthetic``
    and ``path_check`` each, ``difference``, ``ci95``, ``wins``, ``losses``.
  """
  a, b = (result["params"][name]["units"] for name in (param, baseline))
  keys = [k for k in a if k in b and (layer is None or a[k]["layer"] == layer)]
  if not keys:
    raise ValueError(f"{param!r} and {baseline!r} share no scored unit"
                     + (f" in {layer}" if layer else "") + "; score the same units.")
  seed, resamples = result["settings"]["seed"], result["settings"]["resamples"]
  out = {"param": param, "baseline": baseline, "units": len(keys)}
  for kind in ("synthetic", "path_check"):
    d = np.array([a[k][kind] - b[k][kind] for k in keys], np.float64)
    d = d[np.isfinite(d)]
    interval = psychophysics.bootstrap_interval(d, seed, resamples)
    out[kind] = {"difference": round(float(d.mean()), 4),
                 "ci95": [round(v, 4) for v in interval],
                 "wins": int((d > 0).sum()), "losses": int((d < 0).sum())}
  return out


def _pct(value, interval) -> str:
  return f"{100 * value:.1f} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def markdown_table(result: Mapping) -> str:
  """One row per parameterization and layer (and all layers when several)."""
  lines = [f"Model `{result['model']}`, judged by `{result['judge']}` "
           f"(embedding: `{result['embedding']}`). Accuracy in % of trials, "
           "bootstrap 95 % interval in brackets; chance is 50 %.", "",
           "| param | layer | units | trials | synthetic | natural | path check "
           "| activation / best photo (median) |", "|---|---|---|---|---|---|---|---|"]
  seed, resamples = result["settings"]["seed"], result["settings"]["resamples"]
  for name, block in result["params"].items():
    groups = by_layer(block["units"])
    rows = [(layer, summarize(units, seed, resamples)) for layer, units in groups.items()]
    if len(groups) > 1:
      rows.append(("all", block["summary"]))
    for layer, s in rows:
      lines.append(
          f"| {name} | {layer} | {s['units']} | {s['trials']} "
          f"| {_pct(s['synthetic'], s['synthetic_ci95'])} "
          f"| {_pct(s['natural'], s['natural_ci95'])} | {s['path_check']} "
          f"| {s['activation_ratio_median']} |")
  return "\n".join(lines + _comparison_lines(result)) + "\n"


def _comparison_lines(result: Mapping) -> list[str]:
  """Each parameterization paired against the first (:func:`compare`), per
  layer (and over all layers when several)."""
  names = list(result["params"])
  if len(names) < 2:
    return []
  lines = ["", f"Paired against `{names[0]}` over the units both scored: mean "
           "per-unit difference, bootstrap 95 % interval over units; units "
           "better / worse.", "",
           "| param | layer | units | synthetic accuracy (points) | path check |",
           "|---|---|---|---|---|"]
  layers = list(by_layer(result["params"][names[0]]["units"]))
  cell = lambda m, scale, digits: (  # noqa: E731
      f"{scale * m['difference']:+.{digits}f} [{scale * m['ci95'][0]:+.{digits}f}, "
      f"{scale * m['ci95'][1]:+.{digits}f}]; {m['wins']} / {m['losses']}")
  for name in names[1:]:
    for layer in layers + (["all"] if len(layers) > 1 else []):
      c = compare(result, name, names[0], layer=None if layer == "all" else layer)
      lines.append(f"| {name} − {names[0]} | {layer} | {c['units']} "
                   f"| {cell(c['synthetic'], 100, 1)} | {cell(c['path_check'], 1, 2)} |")
  return lines


def figure(result: Mapping, path: os.PathLike | str) -> None:
  """One layer: accuracies with intervals per parameterization and mean path
  curves. Several layers: accuracy and path check per layer."""
  import matplotlib  # Lazy: only the figure needs it.
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  names = list(result["params"])
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6))
  if len(by_layer(result["params"][names[0]]["units"])) > 1:
    _by_layer_panels(result, ax, bx)
  else:
    _one_layer_panels(result, ax, bx)
  fig.tight_layout()
  fig.savefig(path, dpi=110, format="png")
  plt.close(fig)


def _by_layer_panels(result, ax, bx) -> None:
  seed, resamples = result["settings"]["seed"], result["settings"]["resamples"]
  layers = None
  for n, (name, block) in enumerate(result["params"].items()):
    groups = by_layer(block["units"])
    layers = layers or list(groups)
    rows = [summarize(groups[layer], seed, resamples) for layer in layers]
    x = np.arange(len(layers)) + (n - len(result["params"]) / 2) * 0.06
    acc = np.array([r["synthetic"] for r in rows])
    ci = np.array([r["synthetic_ci95"] for r in rows])
    ax.errorbar(x, acc, yerr=[acc - ci[:, 0], ci[:, 1] - acc], marker="o", capsize=3,
                label=name)
    bx.plot(np.arange(len(layers)), [r["path_check"] for r in rows], marker="o", label=name)
  natural = [summarize(units, seed, resamples)["natural"] for units in
             (by_layer(next(iter(result["params"].values()))["units"])[l] for l in layers)]
  ax.plot(np.arange(len(layers)), natural, "k:", marker="s", label="natural refs")
  for axis, label in ((ax, "2AFC accuracy (synthetic refs)"),
                      (bx, "path check (mean percentile)")):
    axis.axhline(0.5, color="k", lw=0.8, ls="--")
    axis.set_xticks(np.arange(len(layers)), layers)
    axis.set_ylim(0, 1.02)
    axis.set_ylabel(label)
    axis.legend(fontsize=7)
  ax.set_title(f"{result['model']}, judged by {result['judge']}", fontsize=9)


def _one_layer_panels(result, ax, bx) -> None:
  names = list(result["params"])
  for k, kind in enumerate(KINDS):
    vals = [result["params"][n]["summary"][kind] for n in names]
    cis = np.array([result["params"][n]["summary"][f"{kind}_ci95"] for n in names])
    x = np.arange(len(names)) + (k - 0.5) * 0.35
    ax.bar(x, vals, 0.35, label=kind,
           yerr=[np.subtract(vals, cis[:, 0]), np.subtract(cis[:, 1], vals)], capsize=3)
  ax.axhline(0.5, color="k", lw=0.8, ls="--")
  ax.set_xticks(np.arange(len(names)), names)
  ax.set_ylim(0, 1)
  ax.set_ylabel("2AFC accuracy")
  ax.legend(loc="lower right")
  layers = None
  for n in names:
    curves = [u["path_curve"] for u in result["params"][n]["units"].values()]
    layers = layers or curves[0]["layers"]
    same = [c for c in curves if c["layers"] == layers]
    bx.plot(np.mean([c["percentile"] for c in same], axis=0), marker="o", label=n)
    ceiling = np.mean([c["exemplar_percentile"] for c in same], axis=0)
  bx.plot(ceiling, color="k", ls=":", label="natural exemplars")
  bx.set_xticks(range(len(layers)), layers, rotation=60, fontsize=7)
  bx.axhline(0.5, color="k", lw=0.8, ls="--")
  bx.set_ylim(0, 1.02)
  bx.set_ylabel(f"path check: percentile among\nrandom photos ({layers[-1]} units)")
  bx.legend(fontsize=7)


__all__ = ["DECISION_RULE", "by_layer", "compare", "figure", "markdown_table", "summarize",
           "unit_key", "unit_record"]
