"""The documentation: the Sphinx site builds with warnings as errors and its
tutorials show executed outputs; the API reference covers every public name
and every public function and class has a docstring; every ```python block of
README.md and docs/**/*.md runs as written; the README is a front page; and
the built site opens in Chromium with its images rendered and no request
leaving the machine.

The site is built once per session (``site`` fixture) into docs/_build/html,
with a fresh environment (``-E``) so that a docstring edited since the last
build is read again; the tutorials' executed outputs come from myst-nb's cache
under docs/_build (empty in a clean clone, so CI executes every tutorial).
"""

from __future__ import annotations

import functools
import http.server
import importlib
import inspect
import os
import pathlib
import pkgutil
import re
import shutil
import subprocess
import sys
import threading
import types
import urllib.parse

import pytest

import atlasjax

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
HTML = DOCS / "_build" / "html"
README = REPO / "README.md"
# The README's quick start: exactly these two command lines (CI runs the second).
QUICK_START = (
    'pip install -e . && python experiments/atlas.py',
    'pip install -e ".[test]" && python -m pytest -q tests',
)
# A front page, not a manual (the manual is the docs site).
README_MAX_LINES = 112   # a front page: what it is, two commands, what is new, links
BUILD_TIMEOUT_S = 1500
# Tutorials whose outputs are text only (the others must show an image).
TEXT_ONLY_TUTORIALS = ("many_hosts",)
PYTHON_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)
NOTEBOOK_MARK = "file_format: mystnb"


# ----------------------------------------------------------------------------
# Walking the package.

def public_modules() -> list[str]:
  """Every importable module of atlasjax with no ``_``-prefixed part."""
  names = ["atlasjax"] + [m.name for m in pkgutil.walk_packages(
      atlasjax.__path__, "atlasjax.")]
  return [n for n in names if not any(p.startswith("_") for p in n.split("."))]


def public_members(module_name: str) -> list[tuple[str, object]]:
  """``(qualified name, object)`` of the public functions and classes a module
  defines (re-exports are documented where they are defined), and of the
  public methods and properties those classes define themselves."""
  module = importlib.import_module(module_name)
  out = []
  for name, obj in vars(module).items():
    if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
      continue
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
      continue
    out.append((f"{module_name}.{name}", obj))
    if inspect.isclass(obj):
      for attr, value in vars(obj).items():
        fn = value.fget if isinstance(value, property) else getattr(
            value, "__func__", value)
        if not attr.startswith("_") and (inspect.isfunction(fn)
                                         or isinstance(value, property)):
          out.append((f"{module_name}.{name}.{attr}", fn))
  return out


def test_every_public_function_and_class_has_a_docstring():
  missing = [name for module in public_modules()
             for name, obj in public_members(module)
             if not (obj.__doc__ or "").strip()]
  missing += [m for m in public_modules()
              if not (importlib.import_module(m).__doc__ or "").strip()]
  assert not missing, ("public names without a docstring (the API reference "
                       f"would leave them out): {missing}")


def test_the_walk_finds_the_package():
  modules = public_modules()
  for expected in ("atlasjax.models.base", "atlasjax.optvis.render",
                   "atlasjax.atlas.pipeline", "atlasjax.classic.attribution",
                   "atlasjax.circuits", "atlasjax.microscope.pipeline",
                   "atlasjax.viewer.writer", "atlasjax.data",
                   "atlasjax.distributed"):
    assert expected in modules
  assert "atlasjax._pinned" not in modules
  names = dict(public_members("atlasjax.optvis.render"))
  assert "atlasjax.optvis.render.render" in names
  assert "atlasjax.optvis.render.RenderResult" in names
  assert "atlasjax.optvis.render.RenderConfig.transform" in names   # a method


# ----------------------------------------------------------------------------
# Python blocks of the README and the docs pages.

def markdown_pages() -> list[pathlib.Path]:
  """README.md and every docs page that is not an executed notebook."""
  pages = [README] + sorted(p for p in DOCS.rglob("*.md")
                            if "_build" not in p.parts
                            and NOTEBOOK_MARK not in p.read_text())
  return pages


def python_blocks(path: pathlib.Path) -> list[str]:
  return PYTHON_BLOCK.findall(path.read_text())


@pytest.mark.parametrize("page", markdown_pages(),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_python_blocks_run_as_written(page, data_root, tmp_path, monkeypatch):
  """One namespace per file (a module, as a pasted script would have: classes
  such as Flax modules look theirs up), blocks in order, from an empty folder."""
  monkeypatch.chdir(tmp_path)
  module = types.ModuleType("atlasjax_docs_page")
  monkeypatch.setitem(sys.modules, module.__name__, module)
  for i, block in enumerate(python_blocks(page)):
    code = compile(block, f"{page.relative_to(REPO)} (python block {i + 1})", "exec")
    exec(code, module.__dict__)  # pylint: disable=exec-used


def test_the_block_finder_reads_fences():
  text = "x\n```python\na = 1\n```\n```sh\nno\n```\n```python title\nb = a\n```\n"
  page = pathlib.Path(os.devnull)
  assert PYTHON_BLOCK.findall(text) == ["a = 1\n", "b = a\n"]
  assert python_blocks(page) == []
  readme = python_blocks(README)
  assert readme and any("from_flax" in b for b in readme)


# ----------------------------------------------------------------------------
# The README is a front page.

def _sh_blocks(text: str) -> list[str]:
  return re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)


def test_readme_is_a_front_page_with_the_two_commands():
  text = README.read_text()
  assert len(text.splitlines()) <= README_MAX_LINES
  assert tuple(_sh_blocks(text)[0].strip().splitlines()) == QUICK_START
  ci = (REPO / ".ci" / "run").read_text()
  assert QUICK_START[1] in ci.splitlines()      # CI runs the README's test line
  assert "docs/" in text and "![" in text       # links into the docs, a picture
  for link in re.findall(r"\]\(((?!https?:)[^)#]+)", text):
    assert (REPO / link).exists(), f"README links to a missing file: {link}"


# ----------------------------------------------------------------------------
# The built site.

@pytest.fixture(scope="session")
def site(data_root) -> pathlib.Path:
  """``python -m sphinx -W -E -b html docs docs/_build/html``, once per session."""
  env = {**os.environ, "ATLASJAX_DATA": str(data_root)}
  proc = subprocess.run(
      [sys.executable, "-m", "sphinx", "-W", "-E", "-q", "-b", "html",
       str(DOCS), str(HTML)], capture_output=True, text=True, env=env,
      cwd=REPO, timeout=BUILD_TIMEOUT_S, check=False)
  if proc.returncode:
    pytest.fail(f"the docs build failed ({proc.returncode}):\n"
                f"{proc.stderr[-6000:]}", pytrace=False)
  return HTML


def _tutorials() -> list[str]:
  return sorted(p.stem for p in (DOCS / "tutorials").glob("*.md"))


def test_every_page_is_built(site):
  sources = [p for p in DOCS.rglob("*.md") if "_build" not in p.parts]
  for page in sources:
    html = site / page.relative_to(DOCS).with_suffix(".html")
    assert html.exists(), f"{page} was not built"
  assert len(_tutorials()) >= 7


@pytest.mark.parametrize("name", _tutorials())
def test_tutorials_show_their_executed_outputs(site, name):
  html = (site / "tutorials" / f"{name}.html").read_text()
  outputs = re.findall(r'<div class="cell_output docutils container">(.*?)</div>\s*</div>',
                       html, re.S)
  cells = html.count('<div class="cell docutils container"')
  assert cells >= 2 and outputs, f"{name}: {cells} cells, {len(outputs)} outputs"
  images = re.findall(r'<img[^>]+src="(\.\./_images/[^"]+\.png)"', html)
  assert images or name in TEXT_ONLY_TUTORIALS, f"{name}: no output image"
  for src in images:
    assert (site / "tutorials" / src).resolve().stat().st_size > 100
  assert "Traceback" not in html and "Error" not in "".join(outputs)
  # No noise from the build machine (warnings quoting its site-packages).
  assert "site-packages" not in html, f"{name} prints a local path"


def test_api_reference_documents_every_public_name(site):
  for module in public_modules():
    page = site / "_autosummary" / f"{module}.html"
    assert page.exists(), f"no API page for {module}"
    html = page.read_text()
    for name, _ in public_members(module):
      assert f'id="{name}"' in html, f"{name} is not on {page.name}"


# ----------------------------------------------------------------------------
# The built site in a browser, served over loopback.

# As tests/viewer/test_viewer_browser.py: Debian's chromium, never a download.
CHROMIUM = os.environ.get("ATLASJAX_CHROMIUM") or shutil.which("chromium") or \
    "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = ("127.0.0.1", "localhost")
PAGES = ("index.html", "tutorials/activation_atlas.html",
         "_autosummary/atlasjax.optvis.render.html")
ALL_IMAGES_LOADED = ("() => Array.from(document.images).every(i => i.complete)")


@pytest.fixture(scope="module")
def served(site):
  handler = functools.partial(_QuietHandler, directory=str(site))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{server.server_address[1]}/"
  server.shutdown()
  server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):  # pylint: disable=arguments-differ
    del args


def test_site_renders_offline_in_chromium(served, tmp_path):
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  if not os.access(CHROMIUM, os.X_OK):
    pytest.fail(f"The docs browser test needs Chromium at {CHROMIUM}; refusing "
                "to skip.", pytrace=False)
  outside, errors = [], []

  def route(r):
    host = urllib.parse.urlparse(r.request.url).hostname
    if r.request.url.startswith("data:") or host in LOCAL_HOSTS:
      r.continue_()
    else:
      outside.append(r.request.url)
      r.abort()

  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.route("**/*", route)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(20_000)
    for name in PAGES:
      response = page.goto(served + name, wait_until="load")
      assert response is not None and response.ok, name
      page.wait_for_function(ALL_IMAGES_LOADED)
      images = page.evaluate(
          "() => Array.from(document.images).map(i => [i.src, i.naturalWidth])")
      broken = [src for src, width in images if width == 0]
      assert not broken, f"{name}: images that did not render: {broken}"
      if not name.startswith("_autosummary"):
        assert images, f"{name} shows no image"
      assert page.title(), name
      page.screenshot(path=str(tmp_path / (name.replace("/", "_") + ".png")))
    browser.close()
  assert not outside, f"requests that left the machine: {outside}"
  assert not errors, f"page errors: {errors}"
