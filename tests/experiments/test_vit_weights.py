"""``--model=vit_* --weights=PATH`` on the scripts (the ViTs ship no weights)."""

import jax

from atlasjax.models import vit


def _error_line(result):
  assert result.code == 2 and "Traceback" not in result.err, result
  lines = [l for l in result.err.splitlines() if l.startswith("error:")]
  assert len(lines) == 1, result
  return lines[0]


def test_missing_or_wrong_weights_are_one_line(run_script, tmp_path):
  line = _error_line(run_script("evaluate", "--model=vit_b16"))
  assert "--weights=PATH" in line and "vit_b16" in line
  line = _error_line(run_script("evaluate", "--model=vit_b16",
                                f"--weights={tmp_path}/none.npz"))
  assert "none.npz not found" in line
  # A file of another architecture (ViT-Ti/32 into ViT-S/32) names the tensor.
  small = vit.init(jax.random.PRNGKey(0), vit.SPECS["vit_ti32"])
  path = vit.save_npz(small, tmp_path / "ti32.npz")
  line = _error_line(run_script("evaluate", "--model=vit_s32", f"--weights={path}"))
  assert "block0/attn/key/bias has shape (3, 64), vit_s32 needs (6, 64)" in line
  line = _error_line(run_script("evaluate", f"--weights={path}"))
  assert "ViT models only" in line


def test_render_parses_layer_names_with_a_colon(run_script, tmp_path):
  """``channel:block1/mlp/fc2:input:N``: the layer is the longest known name
  (the index check then names the layer's 768 channels)."""
  path = vit.save_npz(vit.init(jax.random.PRNGKey(0), vit.DISTILLED),
                      tmp_path / "distilled.npz")
  line = _error_line(run_script(
      "render", "--model=vit_distilled", f"--weights={path}",
      "--objective=channel:block1/mlp/fc2:input:3,900", f"--out={tmp_path}/r"))
  assert "channels [900] outside 0..767" in line
