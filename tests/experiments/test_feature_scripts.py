"""experiments/dictionary.py and neuron_groups.py on the real networks
(GoogLeNet and EfficientNet-Lite0; the from_flax model is covered in
tests/features/): tiny runs, their files in the documented formats, and bad
input as one line."""

import json

import numpy as np
import pytest

from atlasjax.features import sae

TINY = ["--features=32", "--k=4", "--epochs=1", "--batch_size=64",
        "--heldout_every=2", "--size=64"]



@pytest.mark.parametrize("model,layer,channels", [
    ("bvlc_googlenet", "mixed3a", 256), ("efficientnet_lite0", "block3", 40)])
def test_dictionary_script_writes_the_interchange_file(
    run_script, tmp_path, four_photos, model, layer, channels):
  work = tmp_path / "w"
  result = run_script("dictionary", f"--model={model}", f"--layer={layer}",
                      f"--images={four_photos}", f"--workdir={work}", *TINY)
  assert result.code == 0, result
  with np.load(work / "dictionary.npz") as f:
    assert f["encoder"].shape == (channels, 32)
    assert f["decoder"].shape == (32, channels)
    assert f["encoder_bias"].shape == (32,) and f["decoder_bias"].shape == (channels,)
    assert int(f["k"]) == 4 and float(f["input_scale"]) > 0
  metrics = json.loads((work / "metrics.json").read_text())
  assert metrics["model"] == model and metrics["layer"] == layer
  for key in ("r2", "mean_l0", "dead_fraction", "training_vectors_per_s"):
    assert metrics[key] is not None, key
  if model == "bvlc_googlenet":
    # The same photo's groups from the trained dictionary instead of NMF.
    out = tmp_path / "groups"
    result = run_script("neuron_groups", f"--image={sorted(four_photos.glob('*'))[0]}",
                        f"--layer={layer}", "--groups=2", f"--out={out}",
                        f"--dictionary={work / 'dictionary.npz'}", "--size=48",
                        "--steps=2")
    assert result.code == 0, result
    with np.load(out / "groups.npz") as f:
      assert f["image"].shape == (224, 224, 3) and f["spatial"].shape[-1] == 2
      assert f["channels"].shape == (2, channels) and str(f["method"]) == "dictionary"
      d = sae.load(work / "dictionary.npz")
      codes = np.asarray(sae.encode(d, f["activations"].reshape(-1, channels)))
      assert np.isclose(f["spatial"].sum(), np.sort(codes.sum(0))[-2:].sum(), rtol=1e-4)
    assert (out / "groups.png").read_bytes()[:4] == b"\x89PNG"
    # Microscope pages for two of its features (the same two-item direction
    # render as the groups': one compiled program for both scripts).
    result = run_script("dictionary_pages", f"--workdir={work}", "--features=0,5",
                        f"--images={four_photos}", "--size=48", "--steps=2",
                        "--examples=2", "--crop=64")
    assert result.code == 0, result
    page = (work / "dictionary" / layer / "f5.html").read_text()
    assert f"#/unit/{layer}/" in page and page.count("<img") == 1 + 2


@pytest.mark.parametrize("script,flags,message", [
    ("dictionary", ["--features=4", "--k=8"], "--k=8 exceeds --features=4"),
    ("dictionary", ["--layer=logits"], "--layer=logits has no spatial extent"),
    ("neuron_groups", ["--groups=0"], "--groups=0: pass 1 or more"),
    ("dictionary_pages", ["--features=x"], "No dictionary at"),
])
def test_bad_input_is_one_line(run_script, tmp_path, four_photos, script, flags,
                               message):
  where = ([f"--workdir={tmp_path}", f"--images={four_photos}"]
           if script.startswith("dictionary") else
           [f"--out={tmp_path}", f"--image={sorted(four_photos.glob('*'))[0]}"])
  result = run_script(script, *where, *flags)
  assert result.code == 2 and len(result.error_lines) == 1, result
  assert message in result.error_lines[0]
