"""NMF and neuron groups: scikit-learn's fit matched or beaten on real
activations, NNDSVDa equal to scikit-learn's, attribution weights equal to
their analytic value, files in the documented format, on three models."""

import numpy as np
import pytest
from sklearn.decomposition import NMF
from sklearn.decomposition import _nmf as sk_nmf

import flax_cnn
import toy_model
from atlasjax import images as images_lib
from atlasjax.features import groups as groups_lib
from atlasjax.features import nmf
from atlasjax.optvis import render

RANKS = (3, 6)


@pytest.fixture(scope="module")
def photo_acts(googlenet, sample_dir):
  model, params = googlenet
  image = groups_lib.load_photo(images_lib.list_images(sample_dir)[0], model)
  return groups_lib.layer_activations(model, params, image, "mixed4d")


@pytest.mark.parametrize("rank", RANKS)
def test_nmf_fits_real_activations_at_least_as_well_as_sklearn(photo_acts, rank):
  x = photo_acts.reshape(-1, photo_acts.shape[-1])
  ours = float(nmf.relative_error(x, nmf.nmf(x, rank)))
  sk = NMF(rank, random_state=0)   # scikit-learn's defaults: NNDSVDa + CD
  w = sk.fit_transform(x)
  theirs = np.linalg.norm(x - w @ sk.components_) / np.linalg.norm(x)
  assert ours <= theirs * (1 + 1e-5), (ours, theirs)


def test_nndsvda_equals_sklearn_initialisation(photo_acts):
  x = photo_acts.reshape(-1, photo_acts.shape[-1]).astype(np.float64)
  w_ref, h_ref = sk_nmf._initialize_nmf(x, 4, init="nndsvda")
  start = nmf.nndsvda(x.astype(np.float32), 4)
  np.testing.assert_allclose(np.asarray(start.spatial) @ np.asarray(start.channels),
                             w_ref @ h_ref, rtol=2e-3, atol=2e-3 * x.max())


def test_nmf_recovers_an_exact_low_rank_product():
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(60, 3)) @ rng.uniform(size=(3, 20))
  f = nmf.nmf(x, 3)
  assert float(nmf.relative_error(x, f)) < 1e-3
  assert (np.asarray(f.spatial) >= 0).all() and (np.asarray(f.channels) >= 0).all()


def test_attribution_weights_equal_their_analytic_value():
  # The toy CNN's logits are mean(conv2) @ head: d logit / d conv2 = head / HW.
  model, params = toy_model.TOY_MODEL, toy_model.toy_params()
  image = np.random.default_rng(1).uniform(size=(32, 32, 3)).astype(np.float32)
  acts = groups_lib.layer_activations(model, params, image, "conv2")
  label = 3
  attr = acts * np.asarray(params["head"])[:, label] / (acts.shape[0] * acts.shape[1])
  rms = np.sqrt((attr ** 2).reshape(-1, attr.shape[-1]).mean(0))
  expected = np.maximum(rms / rms.mean(), groups_lib.MIN_ATTRIBUTION_WEIGHT)
  got = groups_lib.attribution_weights(model, params, image, "conv2", label)
  np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize("label", [None, 2])
def test_neuron_groups_on_a_from_flax_model(tmp_path, label):
  model, params = flax_cnn.tiny_cnn()
  image = np.random.default_rng(2).uniform(size=(32, 32, 3)).astype(np.float32)
  g = groups_lib.neuron_groups(model, params, image, "stage2", 3, label=label)
  assert g.spatial.shape == (8, 8, 3) and g.channels.shape == (3, 12)
  assert (g.spatial >= 0).all() and (g.channels >= 0).all()
  assert g.method == ("nmf" if label is None else "nmf+attribution")
  # Groups are ordered left to right by the column of their peak.
  peaks = g.spatial.max(axis=0).argmax(axis=0)
  assert (np.diff(peaks) >= 0).all()
  approx = np.einsum("hwn,nc->hwc", g.spatial, g.channels)
  assert np.linalg.norm(approx - g.activations) < 0.5 * np.linalg.norm(g.activations)

  renders = groups_lib.render_groups(
      model, params, g, render.RenderConfig(size=32, steps=3))
  assert renders.shape == (3, 32, 32, 3)
  picture = groups_lib.figure(g, renders)
  assert picture.shape[2] == 3 and 0 <= picture.min() and picture.max() <= 1
  path = groups_lib.save(g, tmp_path, picture)
  with np.load(path) as f:
    assert f["image"].shape == (32, 32, 3)
    np.testing.assert_array_equal(f["image"], image)
    np.testing.assert_array_equal(f["activations"], g.activations)
    np.testing.assert_array_equal(f["spatial"], g.spatial)
    np.testing.assert_array_equal(f["channels"], g.channels)
  assert (tmp_path / "groups.png").is_file()


def test_negative_layer_and_bad_rank_are_clear_errors():
  model, params = toy_model.TOY_MODEL, toy_model.toy_params()
  image = np.full((32, 32, 3), 0.5, np.float32)
  with pytest.raises(ValueError, match="negative activations"):
    groups_lib.neuron_groups(model, params, image, "conv2_pre_relu", 2)
  with pytest.raises(ValueError, match="groups=99"):
    groups_lib.neuron_groups(model, params, image, "conv2", 99)
