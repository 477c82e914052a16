"""Fault injection: ``kill -9`` a run at a seeded random point, rerun, compare.

The resumable stages (collect, layout, icon rendering, the Microscope, and
the dictionary stages: ``dictionary`` collects all positions and trains a
sparse dictionary, ``pages`` writes its feature pages) run on the toy CNN of ``tests/toy_model.py`` over a few synthetic photos, in
a child process that prints ``stage <name>`` as each stage starts. A trial
waits for the marker of a (seeded) chosen stage, sleeps a seeded random
fraction of a second, sends SIGKILL, then reruns everything to completion and
compares every file of the work directories with an uninterrupted run, byte
for byte (JSON files without their wall-clock ``seconds`` fields).

Used by tests/faults/test_kill_and_resume.py (one Microscope trial, CI-sized)
and by bench/fault_injection.py (several trials per stage, every stage; writes
the RESULTS table). Run as a script, it is the child:
``python harness.py PHOTOS WORKDIR [STAGES]``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent
STAGES = ("collect", "layout", "icons", "microscope", "dictionary", "pages")
DONE = "done"
# Files that legitimately differ between runs: the lock holds the pid; orbax's
# checkpoint folders hold wall-clock metadata (the dictionary they lead to is
# compared byte for byte).
IGNORED = (".lock",)
IGNORED_DIRS = ("checkpoints",)
TIMING_KEYS = ("seconds", "training_vectors_per_s")
N_PHOTOS = 16


def make_photos(folder: pathlib.Path, n: int = N_PHOTOS, seed: int = 0) -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(
        folder / f"photo_{i:03d}.png")
  return folder


def run_stages(photos: os.PathLike, workdir: os.PathLike, log=print,
               stages: tuple[str, ...] = STAGES) -> None:
  """collect → layout → icons in ``workdir/atlas``; the Microscope in
  ``workdir/microscope``. Each stage resumes what an earlier run left.
  ``stages`` picks a subset: the atlas stages in order from collect (each
  needs the previous one), the Microscope alone, the dictionary stages in
  ``workdir/dictionary`` (pages need the dictionary)."""
  sys.path.insert(0, str(TESTS))
  import toy_model  # pylint: disable=g-import-not-at-top
  from atlasjax import images as images_lib  # pylint: disable=g-import-not-at-top
  from atlasjax import microscope  # pylint: disable=g-import-not-at-top
  model, params = toy_model.TOY_MODEL, toy_model.toy_params()
  workdir = pathlib.Path(workdir)
  atlas_dir = workdir / "atlas"
  if "collect" in stages:
    _atlas_stages(model, params, photos, atlas_dir, stages, log)
  if "dictionary" in stages:
    _dictionary_stages(model, params, photos, workdir / "dictionary", stages, log)
  if "microscope" in stages:
    log("stage microscope")
    microscope.build(model, params, microscope.MicroscopeConfig(
        layers=("conv1",), size=32, steps=4, chunk_size=2, examples=2, links=2,
        tile=16, batch_size=4, transforms="none"), workdir / "microscope",
        images_lib.list_images(photos), log=lambda _: None)
  log(DONE)


def _atlas_stages(model, params, photos, atlas_dir, stages, log) -> None:
  from atlasjax.atlas import collect, layout, render_atlas  # pylint: disable=g-import-not-at-top
  log("stage collect")
  collect.run(collect.CollectConfig(layers=("conv2",), crops_per_image=2,
                                    image_size=32, batch_size=4, shard_images=2,
                                    loader_threads=1),
              model, params, photos, atlas_dir)
  if "layout" not in stages:
    return
  log("stage layout")
  layout.run(layout.LayoutConfig(layer="conv2", n_neighbors=8, n_epochs=30),
             atlas_dir, model=model)
  if "icons" not in stages:
    return
  log("stage icons")
  render_atlas.run(render_atlas.AtlasConfig(
      layer="conv2", grid_sizes=(3,), min_density=(1,), icon_size=32, steps=6,
      chunk_size=2, transforms="none", n_examples=2), model, params, atlas_dir)


def needed(stages) -> tuple[str, ...]:
  """The stages a run of ``stages`` needs: the atlas stages chain from
  collect, the feature pages need the dictionary."""
  atlas = STAGES[:3]
  out = list(atlas[:1 + max((atlas.index(s) for s in stages if s in atlas), default=-1)])
  out += [s for s in ("microscope",) if s in stages]
  if "dictionary" in stages or "pages" in stages:
    out += ["dictionary"] + (["pages"] if "pages" in stages else [])
  return tuple(out)


def _dictionary_stages(model, params, photos, folder, stages, log) -> None:
  """dictionary.py's stage (positions, training with checkpoints every 4
  steps, the interchange file), then dictionary_pages.py's (renders, top
  examples, pages) into the same folder."""
  import jax  # pylint: disable=g-import-not-at-top
  from atlasjax import images as images_lib  # pylint: disable=g-import-not-at-top
  from atlasjax.features import objectives, pipeline, sae, train  # pylint: disable=g-import-not-at-top
  from atlasjax.microscope import dictionary  # pylint: disable=g-import-not-at-top
  from atlasjax.optvis import render  # pylint: disable=g-import-not-at-top
  from atlasjax import workdir  # pylint: disable=g-import-not-at-top
  log("stage dictionary")
  pipeline.run(pipeline.DictionaryConfig(
      "conv2", train=train.TrainConfig(features=8, k=2, epochs=2, batch_size=64,
                                       checkpoint_every=4),
      heldout_every=4, shard_photos=2), model, params, photos, folder)
  if "pages" not in stages:
    return
  log("stage pages")
  d = sae.load(folder / pipeline.DICTIONARY_FILE)
  with workdir.lock(folder):
    renders = objectives.render_features(
        model, params, d, "conv2", config=render.RenderConfig(
            size=32, steps=4, transforms="none"), key=jax.random.PRNGKey(0)).images
    found = dictionary.top_examples(d, model, params, images_lib.list_images(photos),
                                    "conv2", 2)
    dictionary.write_pages(folder, "conv2", d, jax.device_get(renders), found, 16,
                           model.input_size)


def _normalised(path: pathlib.Path) -> bytes:
  if path.suffix != ".json":
    return path.read_bytes()
  def strip(x):
    if isinstance(x, dict):
      return {k: strip(v) for k, v in x.items() if k not in TIMING_KEYS}
    if isinstance(x, list):
      return [strip(v) for v in x]
    return x
  return json.dumps(strip(json.loads(path.read_text()))).encode()


def snapshot(root: pathlib.Path) -> dict[str, bytes]:
  """``{relative path: normalised bytes}`` of every file under ``root``."""
  return {str(p.relative_to(root)): _normalised(p) for p in sorted(root.rglob("*"))
          if p.is_file() and p.name not in IGNORED
          and not set(p.relative_to(root).parts) & set(IGNORED_DIRS)}


def differences(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
  only = sorted(set(a) ^ set(b))
  changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
  return [f"only in one: {k}" for k in only] + [f"differs: {k}" for k in changed]


@dataclasses.dataclass
class Trial:
  stage: str          # the stage whose marker the kill waited for
  delay_s: float      # seeded sleep after that marker
  killed_in: str      # the last marker seen before the kill ("done": too late)
  elapsed_s: float    # child run time until the kill
  leftovers: int      # temporary files the kill left behind
  diffs: list[str]    # after the rerun, against the uninterrupted run


def _child_env() -> dict:
  paths = [str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")]
  return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))


def kill_at(photos: pathlib.Path, workdir: pathlib.Path, stage: str,
            delay_s: float, stages: tuple[str, ...] = STAGES,
            timeout_s: float = 300) -> tuple[str, float]:
  """Runs the child, SIGKILLs it ``delay_s`` after its ``stage`` marker;
  returns (last marker seen, seconds run)."""
  proc = subprocess.Popen([sys.executable, str(HERE / "harness.py"), str(photos),
                           str(workdir), ",".join(stages)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, env=_child_env())
  seen, reached = [], threading.Event()

  def read():
    for line in proc.stdout:
      seen.append(line.strip())
      if line.strip() in (f"stage {stage}", DONE):
        reached.set()
  reader = threading.Thread(target=read, daemon=True)
  t0 = time.perf_counter()
  reader.start()
  reached.wait(timeout_s)
  time.sleep(delay_s)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  reader.join(5)
  last = seen[-1].removeprefix("stage ") if seen else "startup"
  return last, time.perf_counter() - t0


def trial(photos: pathlib.Path, workdir: pathlib.Path, reference: dict,
          stage: str, delay_s: float, stages: tuple[str, ...] = STAGES) -> Trial:
  """One fault: kill, count leftovers, rerun in this process, compare."""
  killed_in, elapsed = kill_at(photos, workdir, stage, delay_s, stages)
  leftovers = sum(1 for p in workdir.rglob("*.tmp"))
  run_stages(photos, workdir, log=lambda _: None, stages=stages)
  return Trial(stage, delay_s, killed_in, elapsed, leftovers,
               differences(reference, snapshot(workdir)))


if __name__ == "__main__":
  run_stages(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]),
             log=lambda m: print(m, flush=True),
             stages=tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else STAGES)
