"""atlasjax.display: the contact sheet a notebook shows is the PNG save writes."""

import dataclasses
import os

import numpy as np
from PIL import Image
import pytest

from atlasjax import display
from atlasjax import workdir


@dataclasses.dataclass
class Result:
  """Anything with ``images`` (as a RenderResult)."""
  images: np.ndarray


def read(path) -> np.ndarray:
  with Image.open(path) as im:
    assert im.format == "PNG" and im.mode == "RGB"
    return np.asarray(im)


def tiled_by_hand(images: np.ndarray, cols: int) -> np.ndarray:
  """A plain-loop reference: white canvas, gap 2, tiles row-major."""
  n, h, w, _ = images.shape
  rows = -(-n // cols)
  gap = 2
  out = np.ones((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), np.float32)
  for i in range(n):
    top = gap + (i // cols) * (h + gap)
    left = gap + (i % cols) * (w + gap)
    out[top:top + h, left:left + w] = images[i, ..., :3]
  return out


def to_bytes(a: np.ndarray) -> np.ndarray:
  return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)


def test_save_writes_the_sheet_the_notebook_shows(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(5, 6, 7, 4)).astype(np.float32)   # RGBA, 5 tiles
  path = display.save(Result(images), tmp_path / "sub" / "sheet.png")
  assert path == tmp_path / "sub" / "sheet.png"
  got = read(path)
  np.testing.assert_array_equal(got, to_bytes(tiled_by_hand(images, cols=3)))
  # The same bytes _repr_png_ would show.
  assert path.read_bytes() == display.sheet_png(Result(images))
  assert [p.name for p in path.parent.iterdir()] == ["sheet.png"]


@pytest.mark.parametrize("shape, expected", [
    ((6, 7), (6, 7, 3)),              # one grey image
    ((6, 7, 1), (6, 7, 3)),           # one single-channel image
    ((6, 7, 3), (6, 7, 3)),           # one image: no border
    ((2, 3, 6, 7, 3), (2 * 8 + 2, 3 * 9 + 2, 3)),   # 2 items × 3 images: 6 tiles, 3 × 2
])
def test_one_image_or_image_sets(tmp_path, shape, expected):
  a = np.linspace(0, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)
  got = read(display.save(a, tmp_path / "x.png"))
  assert got.shape == expected
  if len(shape) <= 3:
    rgb = np.repeat(a.reshape(6, 7, 1), 3, -1) if a.size == 42 else a
    np.testing.assert_array_equal(got, to_bytes(rgb))
  else:
    np.testing.assert_array_equal(got, to_bytes(tiled_by_hand(a.reshape(6, 6, 7, 3), 3)))


def test_an_atlas_is_saved_through_its_image(tmp_path):
  class Atlas:
    def image(self):
      return np.full((4, 5, 3), 0.25, np.float32)
  got = read(display.save(Atlas(), tmp_path / "atlas.png"))
  assert got.shape == (4, 5, 3) and (got == 64).all()


def test_a_picture_shows_images_side_by_side():
  a, b = np.zeros((4, 4, 3), np.float32), np.ones((4, 4, 3), np.float32)
  picture = display.Picture([a, b])
  assert picture._repr_png_() == display.sheet_png(np.stack([a, b]))
  assert repr(picture) == "Picture(14×8)"
  with pytest.raises(ValueError, match="different shapes"):
    display.Picture([a, np.ones((5, 4, 3))])


def test_out_of_range_and_nan_are_clipped_not_wrapped(tmp_path):
  a = np.array([[[-1.0, 2.0, np.nan]]], np.float32)
  assert read(display.save(a, tmp_path / "c.png")).tolist() == [[[0, 255, 0]]]


@pytest.mark.parametrize("what, path, needle", [
    (np.zeros((4, 4, 3)), "x.jpg", "ending in .png"),
    (np.zeros((3,)), "x.png", "shape (3,)"),
    (np.zeros((2, 4, 4, 5)), "x.png", "C of 1, 3 or 4"),
    (np.zeros((0, 4, 4, 3)), "x.png", "shape (0, 4, 4, 3)"),
])
def test_bad_input_is_one_line_and_leaves_the_old_file(tmp_path, what, path, needle):
  target = tmp_path / path
  target.write_bytes(b"old")
  with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")) as e:
    display.save(what, target)
  assert "\n" not in str(e.value)
  assert target.read_bytes() == b"old" and len(os.listdir(tmp_path)) == 1


def test_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
  target = tmp_path / "s.png"
  display.save(np.zeros((4, 4, 3)), target)
  old = target.read_bytes()

  def write_half_then_fail(path, data):
    def write(f):
      f.write(data[:10])
      raise OSError("disk full")
    workdir.write_with(path, write)
  # The failure happens inside the atomic writer, after part of the file.
  monkeypatch.setattr(workdir, "write_bytes", write_half_then_fail)
  with pytest.raises(OSError, match="disk full"):
    display.save(np.ones((4, 4, 3)), target)
  assert target.read_bytes() == old
  assert [p.name for p in tmp_path.iterdir()] == ["s.png"]
