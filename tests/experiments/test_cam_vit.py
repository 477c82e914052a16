"""experiments/cam.py on a CLS-token ViT (the zoo's distilled ViT, random weights).

No global-average-pool head: the CAM panel is skipped (said in cam.json and in
one printed line), probabilities are softmax(logits) (a ViT has no ``probs``
output), and the default Grad-CAM layers are ones the class logit depends on
(not the last block, whose patch tokens reach no logit).
"""

import json

import jax
import numpy as np
from PIL import Image

from atlasjax import images as images_lib
from atlasjax import models
from atlasjax import plotting
from atlasjax.models import vit

DEPTH = vit.DISTILLED.depth


def _random_variables(spec, seed=0):
  """Random weights of the zoo ViT without compiling its init (NumPy draws in
  the parameter shapes; LayerNorm scales 1; the head random, not big_vision's
  zeros, so that gradients reach the layers)."""
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map_with_path(
      lambda path, s: (np.ones(s.shape, s.dtype) if "scale" in jax.tree_util.keystr(path)
                       else (0.1 * rng.standard_normal(s.shape)).astype(s.dtype)),
      vit.param_shapes(spec))


def test_cam_on_a_cls_token_vit(run_script, tmp_path, sample_dir):
  weights = vit.save_npz(_random_variables(vit.DISTILLED), tmp_path / "distilled.npz")
  photo = sorted(sample_dir.glob("*.jpg"))[0]
  out = tmp_path / "cam"
  r = run_script("cam", "--model=vit_distilled", f"--weights={weights}",
                 f"--image={photo}", f"--out={out}")
  assert r.code == 0 and "Traceback" not in r.err, r
  info = json.loads((out / "cam.json").read_text())
  assert info["cam"] is None and "no global-average-pool" in info["cam_skipped"]
  assert [l for l in r.out.splitlines() if l.startswith("note:")] == [
      f"note: {info['cam_skipped']}."]
  default = f"block{DEPTH // 2}/mlp/fc2:input"
  assert info["panels"] == ["photo", f"grad_cam:block{DEPTH - 1}/ln1",
                            f"grad_cam:{default}"]
  assert info["zero_by_construction"] == []
  # softmax(logits) of the same forward pass, recomputed independently.
  model, params = models.load("vit_distilled", weights=weights)
  image = images_lib.load_for_model(str(photo), model.input_size)[None]
  forward = jax.jit(lambda p, x: model.apply(p, x, layers=("logits",))["logits"])
  logits = np.asarray(forward(params, image)[0], np.float64)
  probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
  assert info["class"] == int(np.argmax(logits))
  np.testing.assert_allclose(info["prob"], probs[info["class"]], rtol=1e-4)
  with Image.open(out / "cam.png") as png:
    three = plotting.hstack([np.zeros_like(image[0])] * 3)
    assert png.size == (three.shape[1], three.shape[0])
  # The last block: zero by construction, said in a note naming the layer to use.
  r = run_script("cam", "--model=vit_distilled", f"--weights={weights}",
                 f"--image={photo}", f"--out={out}", f"--layers=block{DEPTH - 1}")
  assert r.code == 0, r
  assert json.loads((out / "cam.json").read_text())["zero_by_construction"] == [
      f"block{DEPTH - 1}"]
  notes = [l for l in r.out.splitlines() if "zero by construction" in l]
  assert len(notes) == 1 and notes[0].endswith(f"is block{DEPTH - 1}/ln1."), r
