"""Curve stimuli: arcs pass through the centre and bulge towards their
orientation, lines are symmetric strokes, selectivity is arcs over lines."""

import numpy as np

from atlasjax.features import curves

SIZE = 64


def test_arc_passes_through_the_centre_and_bulges_towards_its_orientation():
  a = curves.arc(SIZE, 0.0, 0.15)                  # bulging towards +x
  c = SIZE // 2
  assert a[c - 1:c + 1, c - 1:c + 1].max() > 0.9
  ys, xs = np.nonzero(a > 0.5)
  assert xs.max() <= c + 2                         # nothing beyond the apex
  assert xs.min() < c - 3                          # the arms reach back
  np.testing.assert_allclose(a, a[::-1], atol=1e-6)   # symmetric about y = c


def test_line_is_a_centred_stroke_and_stimuli_are_black_on_white():
  h = curves.line(SIZE, 0.0)
  c = SIZE // 2
  assert h[c - 1:c + 1].max() > 0.9 and h[:c - 4].max() == 0
  np.testing.assert_allclose(curves.line(SIZE, 90.0), h.T, atol=1e-6)
  arcs, lines = curves.stimuli(SIZE)
  assert arcs.shape == (len(curves.RADII) * len(curves.ORIENTATIONS), SIZE, SIZE, 3)
  assert lines.shape[0] == len(curves.ORIENTATIONS) // 2
  assert arcs.max() == 1 and arcs.min() < 0.1


def test_selectivity_and_centre():
  arcs = np.array([[4.0, 1.0], [2.0, 0.5]])
  lines = np.array([[1.0, 2.0], [0.5, -1.0]])
  np.testing.assert_allclose(curves.selectivity(arcs, lines),
                             [4 / (1 + curves.SELECTIVITY_EPS),
                              1 / (2 + curves.SELECTIVITY_EPS)])
  acts = np.zeros((1, 7, 7, 2))
  acts[0, 3, 4, 1] = 5
  acts[0, 0, 0, 0] = 9                              # outside the centre
  np.testing.assert_array_equal(curves.centre(acts), [[0, 5]])
