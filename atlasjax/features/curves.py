"""Synthetic curve and line stimuli, and a curve-selectivity score.

Gorton (2024) asked whether sparse dictionaries of InceptionV1's early layers
find curve detectors the neurons miss. Cammarata et al. ("Curve Detectors",
Distill 2020) identified curve neurons by their response to synthetic curves
across orientations. This module draws such stimuli — arcs of several radii
at every orientation, and straight lines at every orientation — and scores any
unit (a neuron or a dictionary feature) by

  selectivity = max response to arcs / (max response to lines + ε)

with responses read at the centre of the layer (the stimuli are centred).
A curve detector fires for some arc far more than for any line; an edge or
line detector does not. The score is a screen, not a definition: the
renders beside it are the evidence.
"""

from __future__ import annotations

import numpy as np

# Stimuli: orientations (degrees), arc radii (fraction of the image side),
# stroke width (px) and the arc's angular extent (degrees).
ORIENTATIONS = tuple(range(0, 360, 15))
RADII = (0.06, 0.1, 0.15)
STROKE_PX = 3.0
ARC_DEGREES = 120.0
# Added to the line response so a unit silent on lines does not divide by 0.
SELECTIVITY_EPS = 1e-3


def _stroke(distance: np.ndarray) -> np.ndarray:
  """Anti-aliased stroke intensity from the distance to its centre line."""
  return np.clip(STROKE_PX / 2 + 0.5 - distance, 0, 1)


def arc(size: int, orientation: float, radius: float) -> np.ndarray:
  """``[size, size]`` in [0, 1]: an arc through the centre, bulging towards
  ``orientation`` (degrees), of radius ``radius · size``."""
  y, x = np.mgrid[:size, :size].astype(np.float64) + 0.5
  theta = np.deg2rad(orientation)
  r = radius * size
  cx, cy = size / 2 - r * np.cos(theta), size / 2 - r * np.sin(theta)
  angle = np.arctan2(y - cy, x - cx) - theta
  angle = (angle + np.pi) % (2 * np.pi) - np.pi
  on_arc = np.abs(angle) <= np.deg2rad(ARC_DEGREES) / 2
  return _stroke(np.abs(np.hypot(x - cx, y - cy) - r)) * on_arc


def line(size: int, orientation: float, length: float = 0.25) -> np.ndarray:
  """A straight segment through the centre at ``orientation`` degrees."""
  y, x = np.mgrid[:size, :size].astype(np.float64) + 0.5
  theta = np.deg2rad(orientation)
  dx, dy = x - size / 2, y - size / 2
  along = dx * np.cos(theta) + dy * np.sin(theta)
  across = -dx * np.sin(theta) + dy * np.cos(theta)
  return _stroke(np.abs(across)) * (np.abs(along) <= length * size / 2)


def stimuli(size: int) -> tuple[np.ndarray, np.ndarray]:
  """``(arcs [A, S, S, 3], lines [L, S, S, 3])``: black strokes on white."""
  arcs = [arc(size, o, r) for r in RADII for o in ORIENTATIONS]
  lines = [line(size, o) for o in ORIENTATIONS[:len(ORIENTATIONS) // 2]]
  to_rgb = lambda masks: np.repeat((1 - np.stack(masks))[..., None], 3, -1).astype(np.float32)
  return to_rgb(arcs), to_rgb(lines)


def centre(acts: np.ndarray, radius: int = 1) -> np.ndarray:
  """``[N, U]``: the max over the central ``(2r+1)²`` positions of ``[N, H, W, U]``."""
  h, w = acts.shape[1] // 2, acts.shape[2] // 2
  return acts[:, h - radius:h + radius + 1, w - radius:w + radius + 1].max((1, 2))


def selectivity(arc_responses: np.ndarray, line_responses: np.ndarray) -> np.ndarray:
  """``[U]`` curve selectivity from ``[A, U]`` and ``[L, U]`` responses."""
  return arc_responses.max(0) / (np.maximum(line_responses.max(0), 0) + SELECTIVITY_EPS)
