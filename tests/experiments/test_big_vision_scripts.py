"""``--model=big_vision --weights=FILE`` on the scripts (issue 30): the ViT
is inferred from a SigLIP two-tower file in big_vision's layout, and a bad
file ends in one line."""

import numpy as np

import big_vision_files as files


def test_scripts_infer_a_siglip_tower_and_refuse_an_npy(run_script, tmp_path):
  path = files.write(tmp_path, "siglip.npz", files.random_arrays(
      files.two_tower(files.vit_layout(16, 1, 32, 2))))
  # The inferred tower's layers reach the objective check (the MAP head's
  # pooled vector has 16 channels), before anything is compiled.
  result = run_script("render", "--model=big_vision", f"--weights={path}",
                      "--objective=channel:map_head/pooled:3,99", f"--out={tmp_path}/r")
  assert result.code == 2 and len(result.error_lines) == 1, result
  assert "channels [99] outside 0..15" in result.error_lines[0]
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
