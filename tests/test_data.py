"""Finding, verifying and downloading the reference data (no network needed:
downloads are simulated by serving the local copy through urlopen)."""

from __future__ import annotations

import io
import pathlib
import shutil
import urllib.error
import urllib.request

import numpy as np
import pytest

from atlasjax import _pinned
from atlasjax import data as data_lib
from atlasjax.models import weights

GOOGLENET = data_lib.GOOGLENET_DIR


@pytest.fixture
def isolated(monkeypatch, tmp_path):
  """No $ATLASJAX_DATA and an empty user cache under tmp."""
  monkeypatch.delenv(data_lib.ENV_VAR, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  return tmp_path


@pytest.fixture
def weights_copy(data_root, tmp_path) -> pathlib.Path:
  """A writable copy of the data root holding only bvlc_googlenet/."""
  root = tmp_path / "copy"
  shutil.copytree(data_root / GOOGLENET, root / GOOGLENET)
  for path in root.rglob("*"):
    path.chmod(0o755 if path.is_dir() else 0o644)
  return root


def test_local_copy_verifies(data_root, isolated):
  folder = data_lib.googlenet_dir(data_root, allow_download=False)
  assert folder == data_root / GOOGLENET
  sums = data_lib.read_sums(folder / "SHA256SUMS")
  assert len(sums) == 116
  # The sums shipped with the data equal the ones pinned in the package.
  pinned = {}
  for line in _pinned.GOOGLENET_SHA256SUMS.splitlines():
    if line.strip():
      digest, name = line.split(maxsplit=1)
      pinned[name.lstrip("*")] = digest
  assert pinned == sums


def test_corrupt_file_raises_naming_it(weights_copy, isolated):
  victim = weights_copy / GOOGLENET / "weights/inception_4c/3x3_filter.bin"
  raw = bytearray(victim.read_bytes())
  raw[1234] ^= 0x01  # flip one bit
  victim.write_bytes(bytes(raw))
  with pytest.raises(data_lib.DataError, match=r"Corrupt data file .*inception_4c/3x3_filter\.bin"):
    data_lib.googlenet_dir(weights_copy)


def test_missing_file_raises_naming_it(weights_copy, isolated):
  (weights_copy / GOOGLENET / "weights/conv1/7x7_s2_bias.bin").unlink()
  with pytest.raises(data_lib.DataError, match=r"Missing data file .*conv1/7x7_s2_bias\.bin"):
    data_lib.googlenet_dir(weights_copy)
  # Loading the model goes through the same verification.
  with pytest.raises(data_lib.DataError, match=r"7x7_s2_bias\.bin"):
    weights.load_params(weights_copy)


def test_missing_sums_file_raises(weights_copy, isolated):
  (weights_copy / GOOGLENET / "SHA256SUMS").unlink()
  with pytest.raises(data_lib.DataError, match="SHA256SUMS is missing"):
    data_lib.googlenet_dir(weights_copy)


def test_lookup_order(isolated, monkeypatch):
  roots = {}
  for name in ("explicit", "env", "cache"):
    root = isolated / name if name != "cache" else isolated / "xdg" / "atlasjax"
    (root / GOOGLENET).mkdir(parents=True)
    roots[name] = root
  assert data_lib.cache_dir() == roots["cache"]
  monkeypatch.setenv(data_lib.ENV_VAR, str(roots["env"]))
  assert data_lib.find_root(GOOGLENET, roots["explicit"]) == roots["explicit"]
  assert data_lib.find_root(GOOGLENET, str(roots["explicit"])) == roots["explicit"]
  # An explicit path to the bvlc_googlenet folder itself is accepted too.
  assert data_lib.find_root(GOOGLENET, roots["explicit"] / GOOGLENET) == roots["explicit"]
  assert data_lib.find_root(GOOGLENET) == roots["env"]
  # An explicit path without the files falls through to the next candidates.
  assert data_lib.find_root(GOOGLENET, isolated / "nowhere") == roots["env"]
  monkeypatch.delenv(data_lib.ENV_VAR)
  assert data_lib.find_root(GOOGLENET) == roots["cache"]
  shutil.rmtree(roots["cache"])
  assert data_lib.find_root(GOOGLENET) is None


def test_lookup_order_picks_verified_copy(weights_copy, data_root, isolated,
                                          monkeypatch):
  # $ATLASJAX_DATA holds a corrupt copy; an explicit good path wins over it.
  victim = weights_copy / GOOGLENET / "weights/loss3/classifier_bias.bin"
  victim.write_bytes(b"\0" * victim.stat().st_size)
  monkeypatch.setenv(data_lib.ENV_VAR, str(weights_copy))
  assert data_lib.googlenet_dir(data_root) == data_root / GOOGLENET
  with pytest.raises(data_lib.DataError, match="classifier_bias.bin"):
    data_lib.googlenet_dir()


def test_offline_message_says_how_to_point_at_local_copy(isolated, monkeypatch):
  calls = []

  def offline(url, *args, **kwargs):
    calls.append(url)
    raise urllib.error.URLError("Temporary failure in name resolution")

  monkeypatch.setattr(urllib.request, "urlopen", offline)
  with pytest.raises(data_lib.DataError) as info:
    data_lib.googlenet_dir()
  message = str(info.value)
  assert data_lib.ENV_VAR in message and "--data" in message
  assert "download failed" in message and "name resolution" in message
  assert calls, "the download path was not tried"
  # No half-downloaded folder is left behind to be mistaken for data.
  assert not (data_lib.cache_dir() / GOOGLENET).exists()
  # Without permission to download, the same advice comes straight away.
  with pytest.raises(data_lib.DataError, match=data_lib.ENV_VAR):
    data_lib.googlenet_dir(allow_download=False)
  assert len(calls) == 1


def test_missing_sample_folder_message(isolated):
  with pytest.raises(data_lib.DataError, match=r"imagenet-sample.*--images"):
    data_lib.sample_dir(isolated / "empty")


class _Response(io.BytesIO):
  def __init__(self, payload: bytes):
    super().__init__(payload)
    self.headers = {"Content-Length": str(len(payload))}


def _serve_from(local: pathlib.Path, calls: list, corrupt: str | None = None):
  """A fake urlopen that serves the pinned URLs from a local copy."""
  by_url = {data_lib.WEIGHTS_BASE_URL + name: local / name
            for name in data_lib.read_sums(local / "SHA256SUMS")}
  by_url.update({url: local / name for name, url in data_lib.AUX_URLS.items()})

  def urlopen(url, timeout=None):
    calls.append(url)
    if url not in by_url:
      raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
    payload = by_url[url].read_bytes()
    if corrupt and url.endswith(corrupt):
      payload = payload[:-4] + b"\0\0\0\0"
    return _Response(payload)

  return urlopen


def test_simulated_download_lands_verified_in_cache(data_root, isolated,
                                                     monkeypatch, googlenet):
  calls = []
  monkeypatch.setattr(urllib.request, "urlopen",
                      _serve_from(data_root / GOOGLENET, calls))
  folder = data_lib.googlenet_dir()
  assert folder == data_lib.cache_dir() / GOOGLENET
  assert folder.is_relative_to(isolated / "xdg")
  sums = data_lib.read_sums(folder / "SHA256SUMS")
  assert len(calls) == len(sums) + len(data_lib.AUX_URLS) == 118
  for name, digest in sums.items():
    assert data_lib.sha256(folder / name) == digest
  for name, digest in data_lib.AUX_SHA256.items():
    assert data_lib.sha256(folder / name) == digest
  assert not list(folder.rglob(".part-*"))
  # Second call: found in the cache, verified, nothing downloaded.
  assert data_lib.googlenet_dir() == folder
  assert len(calls) == 118
  # The downloaded weights are the ones the model uses.
  params = weights.load_params()
  _, reference = googlenet
  np.testing.assert_array_equal(params["inception_4c"]["3x3"]["kernel"],
                                reference["inception_4c"]["3x3"]["kernel"])


def test_simulated_download_rejects_wrong_bytes(data_root, isolated, monkeypatch):
  calls = []
  bad = "weights/inception_3b/5x5_filter.bin"
  monkeypatch.setattr(urllib.request, "urlopen",
                      _serve_from(data_root / GOOGLENET, calls, corrupt=bad))
  with pytest.raises(data_lib.DataError, match=r"inception_3b/5x5_filter\.bin.*does not match"):
    data_lib.googlenet_dir()
  # Nothing half-downloaded is left for the next lookup to mistake for data.
  assert not (data_lib.cache_dir() / GOOGLENET).exists()
  # A later good download succeeds.
  monkeypatch.setattr(urllib.request, "urlopen",
                      _serve_from(data_root / GOOGLENET, calls))
  assert data_lib.googlenet_dir() == data_lib.cache_dir() / GOOGLENET
