"""Bad input to the experiment scripts ends in one line, never a traceback.

Each case runs a script's ``main`` in-process (flags parsed as on the command
line) and checks: exit status 2, exactly one ``error:`` line naming the
problem, no traceback, and nothing already written removed.
"""

import pathlib
import shutil

import pytest

GOLDFISH = "n01443537_goldfish.jpg"


def assert_one_line(result, *needles):
  assert result.code == 2, result
  assert "Traceback" not in result.err, result
  assert len(result.error_lines) == 1, result
  line = result.error_lines[0]
  for needle in needles:
    assert needle in line, line
  return line


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_dir):
  """Three good photos and one truncated JPEG."""
  folder = tmp_path_factory.mktemp("photos")
  for name in sorted(p.name for p in sample_dir.glob("*.jpg"))[:3]:
    shutil.copy(sample_dir / name, folder / name)
  data = (sample_dir / GOLDFISH).read_bytes()
  (folder / "n01443537_truncated.jpg").write_bytes(data[:len(data) // 3])
  return folder


def test_malformed_objective_spec(run_script, tmp_path):
  r = run_script("render", "--objective=channel:mixed4a:3,channel:mixed4a:17",
                 f"--out={tmp_path}")
  assert_one_line(r, "--objective=channel:mixed4a:3,channel:mixed4a:17",
                  "own --objective")
  r = run_script("render", "--objective=channel:mixed4a", f"--out={tmp_path}")
  assert_one_line(r, "channel:LAYER:INDICES")
  r = run_script("render", "--interpolate=mixed4a:508", f"--out={tmp_path}")
  assert_one_line(r, "LAYER:A,LAYER:B")
  assert not list(tmp_path.iterdir())   # nothing rendered before the check


def test_unknown_layer_model_class(run_script, tmp_path):
  assert_one_line(run_script("render", "--objective=channel:mixed9z:3",
                             f"--out={tmp_path}"), "mixed9z", "Valid layers")
  assert_one_line(run_script("montage", f"--image={tmp_path}/x.jpg",
                             "--model=resnet9000", f"--out={tmp_path}"),
                  "resnet9000", "efficientnet_lite0")
  assert_one_line(run_script("class_model", "--classes=notaclass",
                             f"--out={tmp_path}"), "notaclass")
  # Layers that exist in one model only are refused for the other.
  assert_one_line(run_script("render", "--model=efficientnet_lite0",
                             "--objective=channel:mixed4a:3",
                             f"--out={tmp_path}"), "mixed4a", "block5")


def test_image_folders(run_script, tmp_path, photos):
  assert_one_line(run_script("evaluate", f"--images={tmp_path}/missing"),
                  "not a folder")
  empty = tmp_path / "empty"
  empty.mkdir()
  assert_one_line(run_script("evaluate", f"--images={empty}"), "no photos")
  # A truncated JPEG among good ones is skipped and counted, not fatal.
  r = run_script("evaluate", f"--images={photos}")
  assert r.code == 0, r
  assert '"skipped": 1' in r.out and '"n": 3' in r.out
  assert_one_line(run_script("saliency", f"--image={photos}/n01443537_truncated.jpg",
                             f"--out={tmp_path}/s"), "Cannot read image")


def test_sizes_below_the_model_minimum(run_script, tmp_path, photos):
  photo = sorted(photos.glob("*.jpg"))[0]
  assert_one_line(run_script("activation_grid", f"--image={photo}",
                             "--photo_size=16", f"--out={tmp_path}"),
                  "--photo_size=16", "31 px")
  assert_one_line(run_script("render", "--objective=channel:mixed4a:3",
                             "--size=8", "--steps=1", f"--out={tmp_path}"),
                  "--size=8", "31 px")


def test_bad_output_folders_and_flags(run_script, tmp_path):
  file = tmp_path / "a_file"
  file.write_text("keep me")
  assert_one_line(run_script("atlas", f"--workdir={file}"), "is a file")
  assert file.read_text() == "keep me"
  # /sys refuses new folders even to root.
  assert_one_line(run_script("filters", "--out=/sys/atlasjax_test/out"),
                  "Cannot write", "--out")
  r = run_script("atlas", "--steps=many")
  assert_one_line(r, "--steps")
  assert_one_line(run_script("atlas", "--grid_sizes=ten"), "--grid_sizes")


def test_accentuate_bad_input(run_script, tmp_path, sample_dir):
  photo = f"--image={sample_dir / GOLDFISH}"
  assert_one_line(run_script("accentuate", photo, "--objective=channel:mixed4a",
                             f"--out={tmp_path}"), "channel:LAYER:I")
  assert_one_line(run_script("accentuate", photo, "--objective=logit:goldfish",
                             "--layer_reg=mixed9z", f"--out={tmp_path}"), "mixed9z")
  assert_one_line(run_script("accentuate", f"--image={tmp_path}/none.jpg",
                             "--objective=logit:goldfish", f"--out={tmp_path}"),
                  "none.jpg")
  assert not list(tmp_path.iterdir())   # nothing written before the checks
