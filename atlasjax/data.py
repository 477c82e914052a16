"""Finding, verifying and (when online) downloading the reference data.

Two file sets are pinned by SHA-256 and fetched with ``pooch`` (download to a
temporary file, hash check, atomic move into the cache, retries):

* the BVLC GoogLeNet weights, ``bvlc_googlenet/`` (116 per-tensor files,
  ``deploy.prototxt``, ``synset_words.txt``; sums in :mod:`atlasjax._pinned`);
* the default photo set, ``imagenet-sample-images/``: the 1000 photos (one per
  ILSVRC-2012 class) of github.com/EliSchwartz/imagenet-sample-images at a
  pinned commit, listed with size and SHA-256 in the packaged manifest
  ``imagenet_sample_images.tsv``.

A data root is looked up in this order:

1. an explicit path (a function argument or a script's ``--data`` flag);
2. the ``ATLASJAX_DATA`` environment variable;
3. the user cache (``$XDG_CACHE_HOME/atlasjax`` or ``~/.cache/atlasjax``),
   where missing or corrupt files are downloaded from the published URLs.

A local copy (1, 2) is verified against the sums pinned in the package
(:mod:`atlasjax._pinned`), not only against its own ``SHA256SUMS`` (which must
agree with them): a copy cannot vouch for itself. For photos, a local
``imagenet-sample/`` (800 resized photos, as CI has; also pinned) is preferred
to downloading the 1000 originals. A file whose hash does not match is never
used: in the cache it is downloaded again, in a local copy it raises
:class:`DataError` naming the file and the fix. An explicit path that does not
exist, or that holds no data of the kind asked for, is an error, never a
silent fall-back to another copy; a verified photo folder holding photos that
are not pinned is refused (they would be used unverified); manifest names
must be plain relative paths (no absolute paths, no ``..``).

The published base URLs can be replaced (a mirror, or a loopback server in the
tests) with ``ATLASJAX_BASE_URL_WEIGHTS`` / ``ATLASJAX_BASE_URL_PHOTOS`` or a
:class:`Source` argument; a mirror serves the same relative paths.
``ATLASJAX_PHOTOS_MANIFEST`` names another pinned photo set (same format as the
packaged manifest); it is cached in a folder of its own.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import importlib.resources
import logging
import os
import pathlib
import urllib.parse
from typing import Iterator, Mapping

import pooch

from atlasjax import progress
from atlasjax import workdir as workdir_lib

ENV_VAR = "ATLASJAX_DATA"
WEIGHTS_URL_ENV = "ATLASJAX_BASE_URL_WEIGHTS"
PHOTOS_URL_ENV = "ATLASJAX_BASE_URL_PHOTOS"
PHOTOS_MANIFEST_ENV = "ATLASJAX_PHOTOS_MANIFEST"
GOOGLENET_DIR = "bvlc_googlenet"
SAMPLE_DIR = "imagenet-sample"            # a prepared local copy: 800 resized photos
PHOTOS_DIR = "imagenet-sample-images"     # the downloaded default: 1000 originals
SUMS_FILE = "SHA256SUMS"

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

PHOTOS_COMMIT = "bc69043e2862758a1906c6a24a792bb28c6bb2ff"
PHOTOS_BASE_URL = ("https://raw.githubusercontent.com/EliSchwartz/"
                   f"imagenet-sample-images/{PHOTOS_COMMIT}/")
PHOTOS_MANIFEST = "imagenet_sample_images.tsv"   # package data

# Small files from one host: a few connections at once hide the per-request
# latency (1000 photos one by one take minutes); more would be impolite.
DOWNLOAD_WORKERS = 8
# A transfer that fails or arrives corrupt is fetched again this many times
# before the error is reported (pooch waits 1 s, 2 s, ... between tries).
DOWNLOAD_RETRIES = 2
DOWNLOAD_TIMEOUT_S = 30
_HTTP_CHUNK = 1 << 16


class DataError(RuntimeError):
  """Reference data that is missing, corrupt or unreachable."""


@dataclasses.dataclass(frozen=True)
class Source:
  """Where a pinned file set is published.

  Attributes:
    base_url: URL prefix of every file (ends with "/"); a file's URL is the
      base plus its percent-encoded relative path unless ``urls`` names it.
    sha256: relative path -> hex SHA-256 of every file of the set.
    urls: per-file URLs that are not under ``base_url``.
  """
  base_url: str
  sha256: Mapping[str, str]
  urls: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def url(self, name: str) -> str:
    """Download URL of file ``name`` (a pinned URL, else the base URL plus the quoted name)."""
    return self.urls.get(name) or self.base_url + urllib.parse.quote(name)


def cache_dir() -> pathlib.Path:
  """The user cache folder: ``$XDG_CACHE_HOME/atlasjax`` or ``~/.cache/atlasjax``."""
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return pathlib.Path(root) / "atlasjax"


def sha256(path: os.PathLike) -> str:
  """Hex SHA-256 of a file."""
  return pooch.file_hash(os.fspath(path), alg="sha256")


def parse_sums(text: str) -> dict[str, str]:
  """Parses ``sha256sum`` output into ``{relative path: hex digest}``."""
  sums = {}
  for line in text.splitlines():
    if line.strip():
      digest, name = line.split(maxsplit=1)
      sums[name.lstrip("*")] = digest
  return sums


def read_sums(path: os.PathLike) -> dict[str, str]:
  """Parses a ``sha256sum``-style file into ``{relative path: hex digest}``."""
  return parse_sums(pathlib.Path(path).read_text())


def _format_sums(sums: Mapping[str, str]) -> str:
  return "".join(f"{digest}  {name}\n" for name, digest in sums.items())


def verify_files(root: pathlib.Path, sums: Mapping[str, str]) -> None:
  """Raises :class:`DataError` naming the first missing or mismatching file."""
  for name, digest in sums.items():
    path = root / name
    if not path.is_file():
      raise DataError(
          f"Missing data file {path}. Point {ENV_VAR} (or the --data flag) at a "
          "complete copy, or delete the folder so it is downloaded again.")
    if sha256(path) != digest:
      raise DataError(
          f"Corrupt data file {path}: its SHA-256 does not match the pinned sum. "
          "Replace it with a good copy, or delete it so it is downloaded again.")


# Local copies verified in this process: folder -> (name, size, mtime) of each
# pinned file, so that repeated lookups do not hash the same bytes again.
_VERIFIED: dict[pathlib.Path, tuple] = {}


def _stat_signature(folder: pathlib.Path, names) -> tuple | None:
  try:
    return tuple((n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns)
                 for n in names)
  except OSError:
    return None


def verify_local(folder: pathlib.Path, pinned: Mapping[str, str],
                 own: Mapping[str, str] | None = None) -> None:
  """Verifies a local copy against the ``pinned`` sums of the package.

  ``own`` (the copy's SHA256SUMS) must agree with the pinned sums wherever it
  names the same file; every pinned file must be present with the pinned
  hash. Files are hashed once per process unless they change.
  """
  for name, digest in (own or {}).items():
    if name in pinned and pinned[name] != digest:
      raise DataError(
          f"{folder / SUMS_FILE} lists {name} with a sum that differs from the "
          "one pinned in atlasjax; the copy is not the published data. Replace "
          "it with a good copy.")
  signature = _stat_signature(folder, sorted(pinned))
  if signature is not None and _VERIFIED.get(folder) == signature:
    return
  verify_files(folder, pinned)
  _VERIFIED[folder] = signature


def sample_sums() -> dict[str, str]:
  """The pinned sums of the 800 prepared photos of ``imagenet-sample/``."""
  from atlasjax import _pinned  # pylint: disable=g-import-not-at-top
  return parse_sums(_pinned.IMAGENET_SAMPLE_SHA256SUMS)


# ---------------------------------------------------------------- sources --

def googlenet_source(base_url: str | None = None) -> Source:
  """The pinned weights; ``base_url`` (or $ATLASJAX_BASE_URL_WEIGHTS) names a
  mirror of the whole ``bvlc_googlenet/`` folder."""
  from atlasjax import _pinned  # Generated pinned sums of the published files.
  sums = parse_sums(_pinned.GOOGLENET_SHA256SUMS) | AUX_SHA256
  base = base_url or os.environ.get(WEIGHTS_URL_ENV)
  if base:
    return Source(_slash(base), sums)
  return Source(WEIGHTS_BASE_URL, sums, dict(AUX_URLS))


def check_relative_name(name: str) -> str:
  """``name`` if it is a plain relative path inside its folder, else
  :class:`DataError` (it would be written outside the cache)."""
  parts = pathlib.PurePosixPath(name).parts
  if (not name or name.startswith(("/", "\\")) or "\\" in name or ".." in parts
      or pathlib.PureWindowsPath(name).drive or "\0" in name):
    raise DataError(f"Manifest entry {name!r} is not a plain relative file name "
                    "(no absolute paths, no '..'); fix the manifest.")
  return name


def read_manifest(text: str) -> dict[str, tuple[int, str]]:
  """``{file name: (bytes, sha256)}`` from the tab-separated photo manifest."""
  out = {}
  for line in text.splitlines():
    if not line.strip() or line.startswith("#") or line.startswith("file\t"):
      continue
    name, size, digest = line.split("\t")
    out[check_relative_name(name)] = (int(size), digest)
  return out


def _packaged_manifest() -> dict[str, tuple[int, str]]:
  text = importlib.resources.files("atlasjax").joinpath(
      PHOTOS_MANIFEST).read_text(encoding="utf-8")
  return read_manifest(text)


def photos_manifest(path: os.PathLike | str | None = None
                    ) -> dict[str, tuple[int, str]]:
  """The pinned photo set: ``{file name: (bytes, sha256)}``.

  The packaged 1000 photos, unless ``path`` (or $ATLASJAX_PHOTOS_MANIFEST)
  names another manifest in the same tab-separated format.
  """
  path = path or os.environ.get(PHOTOS_MANIFEST_ENV)
  if not path:
    return _packaged_manifest()
  try:
    manifest = read_manifest(pathlib.Path(path).read_text(encoding="utf-8"))
  except (OSError, ValueError) as e:
    raise DataError(f"Cannot read the photo manifest {path} ({e}); fix or unset "
                    f"{PHOTOS_MANIFEST_ENV}.") from None
  if not manifest:
    raise DataError(f"The photo manifest {path} lists no files; fix or unset "
                    f"{PHOTOS_MANIFEST_ENV}.")
  return manifest


def photos_source(base_url: str | None = None,
                  manifest: os.PathLike | str | None = None) -> Source:
  """The pinned photos; ``base_url`` (or $ATLASJAX_BASE_URL_PHOTOS) names a
  mirror, ``manifest`` (or $ATLASJAX_PHOTOS_MANIFEST) another photo set."""
  sums = {name: digest for name, (_, digest) in photos_manifest(manifest).items()}
  base = base_url or os.environ.get(PHOTOS_URL_ENV) or PHOTOS_BASE_URL
  return Source(_slash(base), sums)


def photos_cache_dir(source: Source) -> pathlib.Path:
  """Where a photo set is cached: the default set in ``imagenet-sample-images/``,
  any other in a folder named after its sums, so two sets never mix."""
  default = {name: digest for name, (_, digest) in _packaged_manifest().items()}
  if dict(source.sha256) == default:
    return cache_dir() / PHOTOS_DIR
  text = _format_sums(dict(sorted(source.sha256.items())))
  digest = hashlib.sha256(text.encode()).hexdigest()[:10]
  return cache_dir() / f"{PHOTOS_DIR}-{digest}"


def _slash(url: str) -> str:
  return url if url.endswith("/") else url + "/"


# ------------------------------------------------------------- downloads --

@contextlib.contextmanager
def _pooch_quiet() -> Iterator[None]:
  # pooch logs one INFO line per file to its own stderr handler; our bar
  # counts the files instead. Restored on exit, so nothing outlives the call.
  logger = pooch.get_logger()
  level = logger.level
  logger.setLevel(logging.WARNING)
  try:
    yield
  finally:
    logger.setLevel(level)


def fetch(source: Source, folder: os.PathLike | str, *, desc: str,
          workers: int = DOWNLOAD_WORKERS) -> pathlib.Path:
  """Makes ``folder`` hold every file of ``source``, verified.

  Files already there with the right hash are kept; missing or corrupt ones
  are downloaded (to a temporary name, moved into place only when the hash
  matches). Raises :class:`DataError` when a file cannot be had.
  """
  folder = pathlib.Path(folder)
  names = [check_relative_name(n) for n in sorted(source.sha256)]
  store = pooch.create(
      path=folder, base_url=source.base_url,
      registry={n: f"sha256:{source.sha256[n]}" for n in names},
      urls={n: source.url(n) for n in names},
      retry_if_failed=DOWNLOAD_RETRIES)
  downloader = _FailFastDownloader(pooch.HTTPDownloader(
      progressbar=False, chunk_size=_HTTP_CHUNK, timeout=DOWNLOAD_TIMEOUT_S))
  # Threads would race to create the same sub-folders.
  for parent in {(folder / n).parent for n in names}:
    parent.mkdir(parents=True, exist_ok=True)
  failure = None
  with _pooch_quiet(), progress.bar(len(names), desc, unit="file") as bar, \
      concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    futures = {pool.submit(store.fetch, n, downloader=downloader): n
               for n in names}
    for future in concurrent.futures.as_completed(futures):
      error = future.exception()
      if error is not None:
        failure = (futures[future], error)
        # Stop queued downloads; what finished is verified and stays cached.
        pool.shutdown(wait=True, cancel_futures=True)
        break
      bar.update(1)
  if failure is not None:
    name, error = failure
    if isinstance(error, (OSError, ValueError)) or _is_request_error(error):
      raise DataError(_download_message(source, name, folder, error)) from error
    raise error
  return folder


class Unreachable(OSError):
  """No connection could be opened to the host (offline, DNS, refused)."""


class _FailFastDownloader:
  """pooch retries every failed transfer; retrying a host that cannot be
  reached only delays the offline message, so that case is not retried."""

  def __init__(self, downloader):
    self._downloader = downloader

  def __call__(self, url, output_file, pooch_, check_only=False):
    import requests
    import urllib3
    try:
      return self._downloader(url, output_file, pooch_, check_only=check_only)
    except requests.exceptions.ConnectionError as e:
      reason = getattr(e.args[0] if e.args else None, "reason", None)
      if isinstance(reason, urllib3.exceptions.NewConnectionError):
        raise Unreachable(f"cannot connect to {urllib.parse.urlsplit(url).netloc}"
                          f": {reason}") from e
      raise


def _is_request_error(e: BaseException) -> bool:
  import requests  # pooch's HTTP client.
  return isinstance(e, requests.exceptions.RequestException)


def _download_message(source: Source, name: str | None, folder: pathlib.Path,
                      error: BaseException) -> str:
  what = f"{source.url(name)}" if name else source.base_url
  reason = " ".join(str(error).split())
  if isinstance(error, ValueError) and "hash" in reason.lower():
    reason = (f"its SHA-256 does not match the pinned sum after "
              f"{1 + DOWNLOAD_RETRIES} tries; refusing to use it")
  elif len(reason) > 200:
    reason = reason[:200] + "…"
  return (f"Could not download {what} ({reason}). Offline? Set {ENV_VAR}=DIR "
          f"to a local copy (or pass --data=DIR), pass --images=DIR with your "
          f"own photos, or fill the cache folder {folder} by hand.")


# ---------------------------------------------------------------- lookups --

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
  """The first data root that contains ``subdir``, or None.

  An explicit path is the only candidate: it must exist and hold ``subdir``
  (or be that folder), else :class:`DataError` — a typo or an empty folder
  must not silently select another copy.
  """
  if explicit:
    root = pathlib.Path(explicit)
    if not root.exists():
      raise DataError(f"--data={explicit} does not exist; pass the folder that "
                      f"holds {GOOGLENET_DIR}/ and {SAMPLE_DIR}/ (or unset it).")
    if (root / subdir).is_dir():
      return root
    if root.name == subdir and root.is_dir():
      return root.parent
    raise DataError(
        f"--data={explicit} holds no {subdir}/; pass the folder that holds "
        f"{GOOGLENET_DIR}/ and {SAMPLE_DIR}/, pass --images=DIR for photos, or "
        f"unset --data (then ${ENV_VAR} or the cache is used).")
  for _, root in _candidates(None):
    if (root / subdir).is_dir():
      return root
  return None


def _local_root(subdir: str, explicit) -> pathlib.Path | None:
  """Like :func:`find_root` over the explicit path and $ATLASJAX_DATA only."""
  root = find_root(subdir, explicit)
  return None if root is None or root == cache_dir() else root


def googlenet_dir(data: os.PathLike | str | None = None, *,
                  allow_download: bool = True,
                  source: Source | None = None) -> pathlib.Path:
  """The verified ``bvlc_googlenet`` folder, downloading it when needed."""
  root = _local_root(GOOGLENET_DIR, data)
  if root is not None:
    folder = root / GOOGLENET_DIR
    sums = folder / SUMS_FILE
    if not sums.is_file():
      raise DataError(f"{sums} is missing; the weights cannot be verified. "
                      f"Point {ENV_VAR} at a complete copy.")
    verify_local(folder, googlenet_source().sha256, read_sums(sums))
    return folder
  source = source or googlenet_source()
  folder = cache_dir() / GOOGLENET_DIR
  if not allow_download:
    _verify_or_offline(folder, source, data)
  else:
    fetch(source, folder, desc="weights")
  sums = folder / SUMS_FILE
  if not sums.is_file():  # For tools that read SHA256SUMS beside the weights.
    workdir_lib.write_text(sums, _format_sums(source.sha256))
  return folder


def photos_dir(*, allow_download: bool = True,
               source: Source | None = None) -> pathlib.Path:
  """The cached photo set (by default the 1000 pinned photos), downloading
  what is missing."""
  source = source or photos_source()
  folder = photos_cache_dir(source)
  if not allow_download:
    _verify_or_offline(folder, source, None)
  else:
    fetch(source, folder, desc="photos")
  refuse_unpinned(folder, source.sha256)
  return folder


def sample_dir(data: os.PathLike | str | None = None, *,
               allow_download: bool = True,
               source: Source | None = None) -> pathlib.Path:
  """Labelled photos for the atlas jobs.

  A local ``imagenet-sample/`` (800 resized photos) when one is found in the
  explicit path, $ATLASJAX_DATA or the cache; otherwise the 1000 pinned
  photos, downloaded into the cache when needed.
  """
  root = find_root(SAMPLE_DIR, data)
  if root is not None:
    folder = root / SAMPLE_DIR
    sums = sample_sums()
    verify_local(folder, sums)
    refuse_unpinned(folder, sums)
    return folder
  return photos_dir(allow_download=allow_download, source=source)


def refuse_unpinned(folder: pathlib.Path, pinned: Mapping[str, str]) -> None:
  """Raises :class:`DataError` if ``folder`` holds photos that are not pinned.

  A verified photo set is used whole (every photo under the folder is
  listed), so one extra photo, in a sub-folder or not, would enter the atlas
  unverified.
  """
  from atlasjax import images as images_lib  # pylint: disable=g-import-not-at-top
  extra = sorted(os.path.relpath(p, folder) for p in images_lib.list_images(folder)
                 if os.path.relpath(p, folder) not in pinned)
  if extra:
    raise DataError(
        f"{folder} holds {len(extra)} photo(s) that are not pinned (first: "
        f"{extra[0]!r}); remove them, or pass --images=DIR to use your own photos.")


def _verify_or_offline(folder: pathlib.Path, source: Source, data) -> None:
  try:
    verify_files(folder, source.sha256)
  except DataError as e:
    looked = ", ".join(f"{s}: {p}" for s, p in _candidates(data))
    raise DataError(
        f"{folder.name}/ is not available offline ({e.args[0].split('. ')[0]}; "
        f"looked in {looked}). Set {ENV_VAR}=DIR (or pass --data=DIR) to a "
        f"local copy, pass --images=DIR with your own photos, or allow the "
        f"download into the cache folder {folder.parent}.") from None
