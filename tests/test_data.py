"""Finding, verifying and downloading the reference data.

Downloads go to a loopback HTTP server in a thread (127.0.0.1 only, stopped
by the fixture and by a timer whatever happens): the real weights served from
the local copy under their pinned sums, and a few tiny photos whose sums the
test pins through the :class:`atlasjax.data.Source` override.
"""

from __future__ import annotations

import collections
import http.server
import io
import pathlib
import shutil
import socket
import threading
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from atlasjax import _pinned
from atlasjax import data as data_lib
from atlasjax import labels as labels_lib
from atlasjax import progress
from atlasjax.models import weights

GOOGLENET = data_lib.GOOGLENET_DIR
REPO = pathlib.Path(__file__).resolve().parents[1]
SERVER_LIFETIME_S = 120   # the server stops itself after this, test or not


class LoopbackServer:
  """Serves ``files`` ({relative path: bytes}) on 127.0.0.1 and records every
  GET. ``corrupt[path] = k`` flips a byte in the next k responses for path."""

  def __init__(self, files: dict[str, bytes]):
    self.files = files
    self.requests: list[str] = []
    self.corrupt: collections.Counter = collections.Counter()
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def do_GET(self):  # noqa: N802 (http.server's name)
        path = urllib.parse.unquote(self.path.lstrip("/"))
        server.requests.append(path)
        payload = server.files.get(path)
        if payload is None:
          self.send_error(404)
          return
        if server.corrupt[path] > 0:
          server.corrupt[path] -= 1
          payload = bytes([payload[0] ^ 0xFF]) + payload[1:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

      def log_message(self, *args):
        pass

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
    self.thread = threading.Thread(target=self.httpd.serve_forever,
                                   kwargs={"poll_interval": 0.05}, daemon=True)
    self.timer = threading.Timer(SERVER_LIFETIME_S, self.stop)
    self.timer.daemon = True
    self.thread.start()
    self.timer.start()
    self._stopped = False

  def stop(self):
    if not self._stopped:
      self._stopped = True
      self.timer.cancel()
      self.httpd.shutdown()
      self.httpd.server_close()
      self.thread.join(5)


@pytest.fixture
def serve():
  servers = []

  def start(files):
    servers.append(LoopbackServer(files))
    return servers[-1]

  yield start
  for s in servers:
    s.stop()


def _dead_url() -> str:
  """A loopback URL where nothing listens (connection refused at once)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}/"


@pytest.fixture
def isolated(monkeypatch, tmp_path):
  """No $ATLASJAX_DATA, an empty user cache under tmp, and published URLs
  replaced by a dead loopback port, so no test can reach the internet."""
  monkeypatch.delenv(data_lib.ENV_VAR, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  monkeypatch.setenv(data_lib.WEIGHTS_URL_ENV, _dead_url())
  monkeypatch.setenv(data_lib.PHOTOS_URL_ENV, _dead_url())
  return tmp_path


@pytest.fixture
def weights_copy(data_root, tmp_path) -> pathlib.Path:
  """A writable copy of the data root holding only bvlc_googlenet/."""
  root = tmp_path / "copy"
  shutil.copytree(data_root / GOOGLENET, root / GOOGLENET)
  for path in root.rglob("*"):
    path.chmod(0o755 if path.is_dir() else 0o644)
  return root


def _tiny_photos(n=5, seed=0) -> dict[str, bytes]:
  """A few small JPEGs named like the pinned set (one with an apostrophe)."""
  rng = np.random.default_rng(seed)
  names = ["n01440764_tench.JPEG", "n01443537_goldfish.JPEG",
           "n02966687_carpenter's_kit.JPEG", "n03590841_jack-o'-lantern.JPEG",
           "n09472597_volcano.JPEG"][:n]
  out = {}
  for name in names:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
        buf, "JPEG")
    out[name] = buf.getvalue()
  return out


def _source_for(server: LoopbackServer, files: dict[str, bytes]) -> data_lib.Source:
  import hashlib
  return data_lib.Source(server.url, {n: hashlib.sha256(b).hexdigest()
                                      for n, b in files.items()})


# ------------------------------------------------------------ local copies --

def test_local_copy_verifies(data_root, isolated):
  folder = data_lib.googlenet_dir(data_root, allow_download=False)
  assert folder == data_root / GOOGLENET
  sums = data_lib.read_sums(folder / "SHA256SUMS")
  assert len(sums) == 116
  # The sums shipped with the data equal the ones pinned in the package.
  assert data_lib.parse_sums(_pinned.GOOGLENET_SHA256SUMS) == sums


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
  # An explicit path without the files is an error, never a fall-back to
  # $ATLASJAX_DATA (issue 29, probe 2)...
  (isolated / "elsewhere").mkdir()
  with pytest.raises(data_lib.DataError, match="holds no bvlc_googlenet"):
    data_lib.find_root(GOOGLENET, isolated / "elsewhere")
  # ...and so is one that does not exist (a typo).
  with pytest.raises(data_lib.DataError, match="does not exist"):
    data_lib.find_root(GOOGLENET, isolated / "nowhere")
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
  # A corrupt local copy is an error, never silently replaced by a download.
  with pytest.raises(data_lib.DataError, match="classifier_bias.bin"):
    data_lib.googlenet_dir()


def test_sample_dir_prefers_local_copy(data_root, isolated, monkeypatch):
  monkeypatch.setenv(data_lib.ENV_VAR, str(data_root))
  folder = data_lib.sample_dir()  # the dead download URL is never tried
  assert folder == data_root / data_lib.SAMPLE_DIR
  assert len(list(folder.glob("*.jpg"))) == 800


# -------------------------------------------------------- pinned manifests --

def test_packaged_photo_manifest_matches_shared_copy(data_root, monkeypatch):
  manifest = data_lib.photos_manifest()
  shared = data_lib.read_manifest(
      (data_root / "imagenet-sample-images.tsv").read_text(encoding="utf-8"))
  assert manifest == shared
  assert len(manifest) == 1000
  assert sum(size for size, _ in manifest.values()) == 109_576_417
  # One photo per class, in the classifier's classes.
  labels = labels_lib.load(data_root)
  wnids = {labels_lib.wnid_from_filename(n) for n in manifest}
  assert len(wnids) == 1000
  assert {labels.index_of_wnid(w) for w in wnids} == set(range(1000))
  # The published URL (pinned commit, percent-encoded name) or a mirror's.
  monkeypatch.delenv(data_lib.PHOTOS_URL_ENV, raising=False)
  source = data_lib.photos_source()
  assert source.url("n03590841_jack-o'-lantern.JPEG") == (
      "https://raw.githubusercontent.com/EliSchwartz/imagenet-sample-images/"
      "bc69043e2862758a1906c6a24a792bb28c6bb2ff/n03590841_jack-o%27-lantern.JPEG")
  monkeypatch.setenv(data_lib.PHOTOS_URL_ENV, "http://mirror.example/photos")
  assert data_lib.photos_source().url("n01440764_tench.JPEG") == (
      "http://mirror.example/photos/n01440764_tench.JPEG")
  assert data_lib.photos_source("http://other/").base_url == "http://other/"


# --------------------------------------------------------------- downloads --

def test_weights_download_from_loopback_lands_verified(
    data_root, isolated, monkeypatch, serve):
  local = data_root / GOOGLENET
  files = {n: (local / n).read_bytes() for n in data_lib.googlenet_source().sha256}
  server = serve(files)
  server.corrupt["weights/inception_3b/5x5_filter.bin"] = 1
  monkeypatch.setenv(data_lib.WEIGHTS_URL_ENV, server.url)
  with progress.capture() as events:
    folder = data_lib.googlenet_dir()
  assert folder == data_lib.cache_dir() / GOOGLENET
  assert folder.is_relative_to(isolated / "xdg")
  # 118 files; the corrupted transfer was refused and fetched again.
  assert len(server.requests) == 119
  assert server.requests.count("weights/inception_3b/5x5_filter.bin") == 2
  for name, digest in data_lib.googlenet_source().sha256.items():
    assert data_lib.sha256(folder / name) == digest
  assert data_lib.read_sums(folder / "SHA256SUMS") == \
      data_lib.googlenet_source().sha256
  assert not [p for p in folder.rglob("*") if p.is_file()
              and p.relative_to(folder).as_posix() not in files
              and p.name != "SHA256SUMS"], "temporary files left behind"
  updates = [e for e in events if e.desc == "weights" and e.kind == "update"]
  assert updates[-1].n == updates[-1].total == 118
  # Second call: found in the cache, verified, nothing downloaded -- even
  # with the server gone.
  server.stop()
  assert data_lib.googlenet_dir() == folder
  assert data_lib.googlenet_dir(allow_download=False) == folder
  assert len(server.requests) == 119
  # The downloaded weights are the ones the model uses.
  params = weights.load_raw(folder)
  reference = weights.load_raw(local)
  np.testing.assert_array_equal(params["inception_4c"]["3x3"]["kernel"],
                                reference["inception_4c"]["3x3"]["kernel"])


def test_photo_download_refuses_corrupt_bytes_and_refetches(isolated, serve):
  files = _tiny_photos()
  server = serve(files)
  source = _source_for(server, files)
  victim = "n02966687_carpenter's_kit.JPEG"
  server.corrupt[victim] = 1            # first transfer corrupt, second good
  folder = data_lib.sample_dir(source=source)
  assert folder == data_lib.photos_cache_dir(source)
  assert folder.parent == data_lib.cache_dir()
  assert folder.name.startswith(data_lib.PHOTOS_DIR + "-")  # not the default set
  assert sorted(p.name for p in folder.iterdir()) == sorted(files)
  assert server.requests.count(victim) == 2
  for name, payload in files.items():
    assert (folder / name).read_bytes() == payload
  # A file corrupted in the cache is refused and fetched again; the good
  # ones are not downloaded again.
  (folder / victim).write_bytes(b"not a jpeg")
  n_before = len(server.requests)
  assert data_lib.photos_dir(source=source) == folder
  assert server.requests[n_before:] == [victim]
  assert (folder / victim).read_bytes() == files[victim]
  # A server that only ever sends wrong bytes: the error names the file, the
  # bad bytes are never placed in the cache, the good files stay.
  (folder / victim).unlink()
  server.corrupt[victim] = 99
  with pytest.raises(data_lib.DataError) as info:
    data_lib.photos_dir(source=source)
  message = str(info.value)
  assert "carpenter%27s_kit.JPEG" in message and "does not match" in message
  assert "\n" not in message
  assert not (folder / victim).exists()
  assert sorted(p.name for p in folder.iterdir()) == sorted(set(files) - {victim})


def test_offline_error_is_one_line_naming_the_fixes(isolated, serve):
  files = _tiny_photos(2)
  server = serve(files)
  source = _source_for(server, files)
  server.stop()  # offline: connection refused
  with pytest.raises(data_lib.DataError) as info:
    data_lib.sample_dir(source=source)
  message = str(info.value)
  assert "\n" not in message
  for needle in (data_lib.ENV_VAR, "--images",
                 str(data_lib.photos_cache_dir(source))):
    assert needle in message, (needle, message)
  # The weights: same advice, and nothing left that looks like data.
  with pytest.raises(data_lib.DataError, match=data_lib.ENV_VAR) as info:
    data_lib.googlenet_dir()
  assert "--images" in str(info.value) and "\n" not in str(info.value)
  assert not list((data_lib.cache_dir() / GOOGLENET).rglob("*.bin"))
  # Without permission to download, the advice comes straight away.
  with pytest.raises(data_lib.DataError, match=r"not available offline.*--images"):
    data_lib.googlenet_dir(allow_download=False)
  (isolated / "empty").mkdir()   # exists, without photos (a missing one is a typo)
  with pytest.raises(data_lib.DataError, match=r"holds no imagenet-sample/.*--images"):
    data_lib.sample_dir(isolated / "empty", allow_download=False)
  # The default photo set from an unreachable host: the same one line.
  with pytest.raises(data_lib.DataError) as info:
    data_lib.sample_dir()
  message = str(info.value)
  assert "\n" not in message and "--images" in message
  assert str(data_lib.cache_dir() / data_lib.PHOTOS_DIR) in message


def _fresh_machine(data_root, isolated, serve, tmp_path, every):
  """Loopback 'internet' serving the weights and every ``every``-th sample
  photo under a pinned manifest; the environment of a machine without
  $ATLASJAX_DATA and with an empty cache. Returns (env, servers, photos)."""
  import hashlib
  import os
  local = data_root / GOOGLENET
  files = {n: (local / n).read_bytes() for n in data_lib.googlenet_source().sha256}
  photos = sorted((data_root / data_lib.SAMPLE_DIR).glob("*.jpg"))[::every]
  photo_files = {p.name: p.read_bytes() for p in photos}
  weights_server, photo_server = serve(files), serve(photo_files)
  manifest = tmp_path / "photos.tsv"
  manifest.write_text("file\tbytes\tsha256\n" + "".join(
      f"{n}\t{len(b)}\t{hashlib.sha256(b).hexdigest()}\n"
      for n, b in photo_files.items()))
  env = {k: v for k, v in os.environ.items() if k != data_lib.ENV_VAR}
  env.update({data_lib.WEIGHTS_URL_ENV: weights_server.url,
              data_lib.PHOTOS_URL_ENV: photo_server.url,
              data_lib.PHOTOS_MANIFEST_ENV: str(manifest),
              "XDG_CACHE_HOME": str(isolated / "xdg"),
              "PYTHONPATH": str(REPO)})
  return env, weights_server, photo_server, photo_files


def test_fresh_machine_script_downloads_weights_and_photos(
    data_root, isolated, serve, tmp_path):
  """experiments/evaluate.py with an empty cache and no $ATLASJAX_DATA: the
  weights and a pinned photo set come from the (loopback) internet."""
  import json
  import subprocess
  import sys
  env, weights_server, photo_server, photo_files = _fresh_machine(
      data_root, isolated, serve, tmp_path, every=50)
  out = subprocess.run([sys.executable, str(REPO / "experiments/evaluate.py")],
                       capture_output=True, text=True, env=env, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["n"] == len(photo_files) == 16
  assert result["top1"] >= 0.5, result   # real photos, real weights
  assert len(weights_server.requests) == 118
  assert sorted(photo_server.requests) == sorted(photo_files)
  assert "xla_bridge" not in out.stderr   # the TPU probe line is silenced


def test_fresh_machine_main_job_builds_an_atlas(data_root, isolated, serve, tmp_path):
  """The README's first line on an empty machine: experiments/atlas.py with
  no $ATLASJAX_DATA downloads the weights and the pinned photos (from the
  loopback 'internet') and builds the atlas, with no other step. Sizes are
  shrunk by flags; the data path is the default one."""
  import json
  import subprocess
  import sys
  env, weights_server, photo_server, photo_files = _fresh_machine(
      data_root, isolated, serve, tmp_path, every=100)
  workdir = tmp_path / "work"
  out = subprocess.run(
      [sys.executable, str(REPO / "experiments/atlas.py"), f"--workdir={workdir}",
       "--layers=mixed3b", "--grid_sizes=2", "--min_density=1", "--icon_size=64",
       "--steps=4", "--chunk_size=4", "--crops_per_image=2", "--noviewer"],
      capture_output=True, text=True, env=env, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  atlas = json.loads((workdir / "atlas.json").read_text())
  assert atlas["model"] == "bvlc_googlenet" and atlas["layer"] == "mixed3b"
  assert atlas["grids"][0]["cells"]
  assert len(weights_server.requests) == 118
  assert sorted(photo_server.requests) == sorted(photo_files)


# ------------------------------------ issue 22: a copy cannot vouch for itself --

def _nan_weight(root: pathlib.Path) -> str:
  name = "weights/loss3/classifier_bias.bin"
  victim = root / GOOGLENET / name
  victim.write_bytes(np.full(victim.stat().st_size // 4, np.nan, "<f4").tobytes())
  return name


def test_weight_edited_to_nan_with_its_line_removed_is_refused(weights_copy,
                                                               isolated):
  name = _nan_weight(weights_copy)
  sums = weights_copy / GOOGLENET / "SHA256SUMS"
  sums.write_text("".join(l + "\n" for l in sums.read_text().splitlines()
                          if not l.endswith(name)))
  with pytest.raises(data_lib.DataError, match="classifier_bias.bin"):
    data_lib.googlenet_dir(weights_copy)


def test_empty_sums_file_vouches_for_nothing(weights_copy, isolated):
  _nan_weight(weights_copy)
  (weights_copy / GOOGLENET / "SHA256SUMS").write_text("")
  with pytest.raises(data_lib.DataError, match="classifier_bias.bin"):
    data_lib.googlenet_dir(weights_copy)


def test_sums_file_disagreeing_with_the_pinned_ones_is_refused(weights_copy,
                                                               isolated):
  name = _nan_weight(weights_copy)
  sums = weights_copy / GOOGLENET / "SHA256SUMS"
  digest = data_lib.sha256(weights_copy / GOOGLENET / name)
  sums.write_text("".join((f"{digest}  {name}" if l.endswith(name) else l) + "\n"
                          for l in sums.read_text().splitlines()))
  with pytest.raises(data_lib.DataError, match="pinned"):
    data_lib.googlenet_dir(weights_copy)


def test_local_photo_folder_is_verified_against_pinned_sums(data_root, isolated):
  root = isolated / "photos_copy"
  folder = root / data_lib.SAMPLE_DIR
  folder.mkdir(parents=True)
  for photo in (data_root / data_lib.SAMPLE_DIR).iterdir():
    (folder / photo.name).symlink_to(photo)
  assert data_lib.sample_dir(root) == folder   # the genuine photos pass
  victim = folder / "n01443537_goldfish.jpg"
  victim.unlink()
  victim.write_bytes((folder / "n01440764_tench.jpg").read_bytes())
  with pytest.raises(data_lib.DataError, match="goldfish"):
    data_lib.sample_dir(root)


def test_explicit_data_path_that_does_not_exist_is_an_error(data_root, isolated,
                                                            monkeypatch):
  monkeypatch.setenv(data_lib.ENV_VAR, str(data_root))   # a good fall-back exists
  with pytest.raises(data_lib.DataError, match="/no/such/dir does not exist"):
    data_lib.googlenet_dir("/no/such/dir")
  with pytest.raises(data_lib.DataError, match="does not exist"):
    data_lib.sample_dir("/no/such/dir")


@pytest.mark.parametrize("name", ["../../x.JPEG", "/etc/x.JPEG", "a/../../x.JPEG",
                                  "..\\x.JPEG"])
def test_manifest_names_cannot_leave_the_cache(isolated, monkeypatch, name):
  manifest = isolated / "evil.tsv"
  manifest.write_text(f"{name}\t3\t{'0' * 64}\n", encoding="utf-8")
  monkeypatch.setenv(data_lib.PHOTOS_MANIFEST_ENV, str(manifest))
  with pytest.raises(data_lib.DataError, match="not a plain relative"):
    data_lib.photos_dir()
  assert not (isolated / "x.JPEG").exists()
