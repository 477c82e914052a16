"""Named configurations (presets) of the experiments; see atlas.py."""
