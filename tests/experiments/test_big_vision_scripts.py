"""``--model=big_vision --weights=FILE`` on the scripts (issue 30): the ViT
is inferred from a SigLIP two-tower file in big_vision's layout, and a bad
file ends in one line."""

import numpy as np
from PIL import Image

import big_vision_files as files


def test_render_infers_a_siglip_tower_and_refuses_an_npy(run_script, tmp_path):
  path = files.write(tmp_path, "siglip.npz", files.random_arrays(
      files.two_tower(files.vit_layout(16, 1, 32, 2))))
  result = run_script("render", "--model=big_vision", f"--weights={path}",
                      "--objective=channel:map_head/pooled:0", f"--size={files.SIZE}",
                      "--steps=2", f"--out={tmp_path}/r")
  assert result.code == 0, result
  assert [p.suffix for p in (tmp_path / "r").iterdir()].count(".png") >= 1
  np.save(tmp_path / "one.npy", np.zeros(3))
  (tmp_path / "one.npz").write_bytes((tmp_path / "one.npy").read_bytes())
  result = run_script("render", "--model=big_vision", f"--weights={tmp_path}/one.npz",
                      "--objective=channel:map_head/pooled:0", f"--out={tmp_path}/s")
  assert result.code == 2 and len(result.error_lines) == 1, result
  assert "single .npy array" in result.error_lines[0]
  # layout.py builds the model without its weights (cli.get_model): from the
  # file's headers, so its error is about the missing collection, not the model.
  result = run_script("layout", "--model=big_vision", f"--weights={path}",
                      f"--workdir={tmp_path}/empty")
  assert result.code == 2 and "weights=FILE" not in result.err, result
