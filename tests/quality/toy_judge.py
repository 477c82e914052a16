"""The toy CNN of tests/toy_model.py as a quality judge (its last feature map:
conv2, 16 values)."""

import dataclasses

import toy_model

TOY_JUDGE = dataclasses.replace(toy_model.TOY_MODEL, name="toy_judge", cam_layer="conv2")
