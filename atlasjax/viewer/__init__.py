"""Static, offline, zoomable browser viewer for activation atlases.

``write_viewer(workdir)`` turns an atlas work directory (``atlas.json`` and
the files it names) into ``<workdir>/index.html`` plus ``<workdir>/viewer/``:
open the page from disk or serve the folder with ``python -m http.server``.
Nothing is loaded from outside the work directory's files.

The package writes the page and nothing else: driving a browser (the tests,
the frame-time benchmark, ``experiments/viewer.py --screenshot``) is done with
Playwright outside the library.
"""

from __future__ import annotations

from atlasjax.viewer.writer import AtlasFormatError, load_atlas, write_viewer

__all__ = ["write_viewer", "load_atlas", "AtlasFormatError"]
