"""Reading images of every common kind, and streaming batches past bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from atlasjax import images as images_lib

RED, BLUE = (220, 20, 30), (20, 40, 200)


def _halves(size=(40, 24)) -> Image.Image:
  """Left half RED, right half BLUE (width x height = size)."""
  w, h = size
  array = np.zeros((h, w, 3), np.uint8)
  array[:, : w // 2] = RED
  array[:, w // 2:] = BLUE
  return Image.fromarray(array)


def _close(pixel, colour, tol=12 / 255):
  return np.allclose(pixel, np.array(colour) / 255.0, atol=tol)


@pytest.fixture
def files(tmp_path):
  """One file per kind; values are (path, expected (H, W), colour check)."""
  out = {}
  img = _halves()

  def save(name, image, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path

  out["jpeg"] = save("a.jpg", img, quality=95)
  out["png"] = save("b.png", img)
  out["webp"] = save("c.webp", img, lossless=True)
  out["bmp"] = save("d.bmp", img)
  out["gray"] = save("e.png", Image.new("L", (30, 20), 77))
  out["palette"] = save("f.png", img.convert("P", palette=Image.ADAPTIVE, colors=4))
  out["cmyk"] = save("g.jpg", Image.new("CMYK", (30, 20), (0, 255, 255, 0)), quality=95)
  rgba = Image.new("RGBA", (30, 20), (0, 0, 255, 255))
  rgba.paste((0, 0, 0, 0), (0, 0, 15, 20))  # left half fully transparent
  out["rgba"] = save("h.png", rgba)
  sixteen = np.full((20, 30), 128 * 257, np.uint16)
  sixteen[:, 15:] = 65535
  out["png16"] = save("i.png", Image.fromarray(sixteen))
  exif = Image.Exif()
  exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
  out["exif"] = save("j.jpg", img, quality=95, exif=exif.tobytes())
  good = io.BytesIO()
  _halves((200, 150)).save(good, "JPEG", quality=90)
  truncated = tmp_path / "k_truncated.jpg"
  truncated.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
  out["truncated"] = truncated
  text = tmp_path / "l_not_an_image.jpg"
  text.write_text("this is not a JPEG\n")
  out["text"] = text
  empty = tmp_path / "m_empty.png"
  empty.write_bytes(b"")
  out["empty"] = empty
  return out


@pytest.mark.parametrize("kind", ["jpeg", "png", "webp", "bmp", "palette"])
def test_colour_formats(files, kind):
  image = images_lib.read_image(files[kind])
  assert image.shape == (24, 40, 3) and image.dtype == np.float32
  assert _close(image[12, 5], RED) and _close(image[12, 35], BLUE)


def test_grayscale_becomes_rgb(files):
  image = images_lib.read_image(files["gray"])
  assert image.shape == (20, 30, 3)
  np.testing.assert_allclose(image, 77 / 255, atol=1e-6)


def test_cmyk_jpeg_becomes_rgb(files):
  assert Image.open(files["cmyk"]).mode == "CMYK"
  image = images_lib.read_image(files["cmyk"])
  assert image.shape == (20, 30, 3)
  assert _close(image[10, 15], (255, 0, 0), tol=8 / 255)


def test_rgba_is_composited_on_white(files):
  image = images_lib.read_image(files["rgba"])
  assert image.shape == (20, 30, 3)
  assert (image[:, :15] == 1.0).all()                           # transparent -> white
  assert (image[:, 15:] == np.array([0, 0, 1.0], np.float32)).all()  # opaque blue


def test_16_bit_png_is_scaled_not_clipped(files):
  assert Image.open(files["png16"]).mode.startswith("I")
  image = images_lib.read_image(files["png16"])
  assert image.shape == (20, 30, 3)
  # 128 * 257 is mid grey in 16 bits, 65535 is white.
  np.testing.assert_allclose(image[:, :15], 128 / 255, atol=1 / 255)
  np.testing.assert_allclose(image[:, 15:], 1.0, atol=1e-6)


def test_dark_16_bit_image_stays_dark(tmp_path):
  """Scaling is by the 16-bit range, not by the image's own maximum."""
  path = tmp_path / "dark.png"
  Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(path)
  image = images_lib.read_image(path)
  np.testing.assert_allclose(image, 1000 / 65535, atol=1 / 255)


def test_exif_orientation_is_applied(files):
  assert Image.open(files["exif"]).getexif()[0x0112] == 6
  image = images_lib.read_image(files["exif"])
  # 40 x 24 stored, displayed rotated 90 degrees clockwise: 24 wide, 40 tall,
  # with the stored left half (red) now on top.
  assert image.shape == (40, 24, 3)
  assert _close(image[5, 12], RED) and _close(image[35, 12], BLUE)


@pytest.mark.parametrize("kind", ["truncated", "text", "empty"])
def test_unreadable_files_raise_image_read_error(files, kind):
  with pytest.raises(images_lib.ImageReadError, match=files[kind].name):
    images_lib.read_image(files[kind])
  with pytest.raises(images_lib.ImageReadError):
    images_lib.load_eval(files[kind])


def test_list_images(files, tmp_path):
  (tmp_path / "notes.txt").write_text("x")
  (tmp_path / "sub").mkdir()
  _halves().save(tmp_path / "sub" / "z.JPG")
  found = images_lib.list_images(tmp_path)
  assert str(tmp_path / "sub" / "z.JPG") in found
  assert not any(p.endswith(".txt") for p in found)
  assert found == sorted(found)
  assert len(images_lib.list_images(tmp_path, recursive=False)) == len(found) - 1
  with pytest.raises(FileNotFoundError, match="--images"):
    images_lib.list_images(tmp_path / "missing")


def test_eval_preprocess_gives_224(files):
  for kind in ("jpeg", "gray", "cmyk", "rgba", "png16", "exif"):
    image = images_lib.load_eval(files[kind])
    assert image.shape == (224, 224, 3) and image.dtype == np.float32, kind
    assert 0.0 <= image.min() and image.max() <= 1.0
  wide = images_lib.eval_preprocess(_halves((600, 300)))
  assert wide.shape == (224, 224, 3)
  # Centre crop of a left-red/right-blue image: both halves survive.
  assert _close(wide[112, 10], RED, 0.05) and _close(wide[112, 214], BLUE, 0.05)


def test_iter_batches_skips_bad_files(files):
  order = ["jpeg", "truncated", "png", "webp", "text", "bmp", "gray", "empty",
           "cmyk", "rgba", "png16", "exif", "palette"]
  paths = [str(files[k]) for k in order]
  report = images_lib.ReadReport()
  batches = list(images_lib.iter_batches(paths, 4, report=report, warn=False))
  good = [i for i, k in enumerate(order) if k not in ("truncated", "text", "empty")]
  assert [i for b in batches for i in b.indices] == good
  assert [p for b in batches for p in b.paths] == [paths[i] for i in good]
  assert all(b.images.shape[1:] == (224, 224, 3) for b in batches)
  assert sum(len(b.images) for b in batches) == 10
  assert report.read == 10 and report.skipped == 3
  assert [p for p, _ in report.failed] == [str(files[k]) for k in
                                           ("truncated", "text", "empty")]
  assert "skipped 3 unreadable" in report.summary()
  assert files["truncated"].name in report.summary()


def test_iter_batches_warns(files, capsys):
  paths = [str(files["jpeg"]), str(files["text"])]
  batches = list(images_lib.iter_batches(paths, 8))
  assert len(batches) == 1 and batches[0].images.shape == (1, 224, 224, 3)
  assert "skipping unreadable image" in capsys.readouterr().err


def test_iter_batches_all_bad_yields_nothing(files):
  report = images_lib.ReadReport()
  assert list(images_lib.iter_batches([str(files["text"])], 2, report=report,
                                      warn=False)) == []
  assert report.read == 0 and report.skipped == 1
