"""Saliency, SmoothGrad, CAM and Grad-CAM against independent references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlasjax import images as images_lib
from atlasjax.classic import attribution

SIZE = 16


@pytest.fixture(scope="module")
def toy_batch():
  images = jax.random.uniform(jax.random.PRNGKey(1), (2, SIZE, SIZE, 3))
  return images, jnp.array([3, 7])


def test_saliency_matches_finite_differences(toy, toy_batch):
  model, params = toy
  images, classes = toy_batch
  grads = np.asarray(attribution.saliency(model, params, images, classes))
  assert grads.shape == images.shape
  rng = np.random.default_rng(0)
  # Central differences in float64 with a step small enough not to cross a
  # ReLU kink of this piecewise-linear net.
  eps = 1e-5
  with jax.enable_x64(True):
    params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    for b in range(2):
      image = jnp.asarray(images[b], jnp.float64)

      def logit(x):
        return float(model.apply(params64, x[None])["logits"][0, classes[b]])

      direction = rng.standard_normal(images.shape[1:])
      direction /= np.linalg.norm(direction)
      pixels = [np.eye(image.size)[i].reshape(image.shape)
                for i in rng.choice(image.size, 4, replace=False)]
      for v in [direction] + pixels:
        fd = (logit(image + eps * v) - logit(image - eps * v)) / (2 * eps)
        assert (grads[b] * v).sum() == pytest.approx(fd, rel=1e-4, abs=1e-6)


def test_smoothgrad_one_sample_no_noise_is_vanilla(toy, toy_batch):
  model, params = toy
  images, classes = toy_batch
  vanilla = attribution.saliency(model, params, images, classes)
  smooth = attribution.smoothgrad(model, params, images, classes,
                                  jax.random.PRNGKey(5), 1, 0.0)
  # Same maths; only float rounding may differ between the two programs.
  np.testing.assert_allclose(smooth, vanilla, rtol=1e-6, atol=1e-7)


def test_smoothgrad_is_keyed_and_batch_independent(toy, toy_batch):
  model, params = toy
  images, classes = toy_batch
  key = jax.random.PRNGKey(0)
  a = attribution.smoothgrad(model, params, images, classes, key, 4, 0.2)
  b = attribution.smoothgrad(model, params, images, classes, key, 4, 0.2)
  c = attribution.smoothgrad(model, params, images, classes,
                             jax.random.PRNGKey(1), 4, 0.2)
  first = attribution.smoothgrad(model, params, images[:1], classes[:1], key,
                                 4, 0.2)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.allclose(a, c)
  np.testing.assert_allclose(first[0], a[0], rtol=1e-5, atol=1e-6)


def test_saliency_map_reductions():
  g = jnp.array([[[[1.0, -3.0, 2.0]]]])
  assert float(attribution.saliency_map(g)[0, 0, 0]) == 3.0
  assert float(attribution.saliency_map(g, "l2")[0, 0, 0]) == pytest.approx(
      np.sqrt(14))
  with pytest.raises(ValueError):
    attribution.saliency_map(g, "mean")


def test_toy_grad_cam_equals_cam(toy, toy_batch):
  # The toy head is global-average-pool + linear (no bias) on conv2.
  model, params = toy
  images, classes = toy_batch
  feats = model.apply(params, images, layers=("conv2",))["conv2"]
  cam = attribution.cam(feats, params["head"], classes)
  logits = model.apply(params, images, layers=("logits",))["logits"]
  np.testing.assert_allclose(cam.mean(axis=(1, 2)),
                             logits[jnp.arange(2), classes], rtol=1e-5)
  grad_cam = attribution.grad_cam(model, params, images, classes, "conv2")
  np.testing.assert_allclose(attribution.normalize_map(grad_cam),
                             attribution.normalize_map(cam), atol=1e-5)


def test_layer_gradient_matches_finite_difference_on_activation(toy, toy_batch):
  model, params = toy
  images, classes = toy_batch
  score = lambda out: out["logits"][0, classes[0]]
  acts, grad = attribution.layer_gradient(model, params, images[:1], "conv2",
                                          score)
  # logits = mean(conv2) @ head, so d logit / d conv2[y, x, k] = head[k, c] / (h w).
  h, w = acts.shape[1:3]
  expected = jnp.broadcast_to(params["head"][:, classes[0]] / (h * w),
                              acts.shape)
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def photos(sample_dir):
  names = ("n01443537_goldfish.jpg", "n01440764_tench.jpg")
  images = np.stack([images_lib.load_eval(sample_dir / n) for n in names])
  return jnp.asarray(images), jnp.array([1, 0])


def test_model_cam_mean_plus_bias_is_logit(googlenet, photos):
  model, params = googlenet
  images, classes = photos
  cam = attribution.model_cam(model, params, images, classes)
  assert cam.shape == (2, 7, 7)
  logits = model.apply(params, images, layers=("logits",))["logits"]
  bias = model.classifier_params(params)["bias"][classes]
  np.testing.assert_allclose(cam.mean(axis=(1, 2)) + bias,
                             logits[jnp.arange(2), classes], rtol=1e-5, atol=1e-4)


def test_googlenet_grad_cam_at_mixed5b_equals_cam(googlenet, photos):
  model, params = googlenet
  images, classes = photos
  cam = attribution.model_cam(model, params, images, classes)
  grad_cam = attribution.grad_cam(model, params, images, classes, "mixed5b")
  assert float(grad_cam.max()) > 0
  np.testing.assert_allclose(attribution.normalize_map(grad_cam),
                             attribution.normalize_map(cam), atol=1e-5)
  # Unnormalised: Grad-CAM = relu(CAM) / (h w) for a GAP + linear head.
  np.testing.assert_allclose(grad_cam, jax.nn.relu(cam) / 49, rtol=1e-4,
                             atol=1e-6)


def test_grad_cam_rejects_layer_off_the_path(googlenet, photos):
  model, params = googlenet
  images, classes = photos
  with pytest.raises(attribution.NotOnPathError, match="Perturbable outputs: .*mixed4d"):
    attribution.grad_cam(model, params, images[:1], classes[:1], "mixed4d_3x3")
