r"""Regenerates every documentation figure: one command.

  python bench/figures/make_figures.py            # all, in order
  python bench/figures/make_figures.py --list     # what would run
  python bench/figures/make_figures.py --only=maco_units,quality

Scripts that *make figures for the docs* live in ``bench/figures/``, apart
from the measurements in ``bench/``. Each entry below is a figure in
``docs/images/`` and the commands that make it (prerequisite stages first,
each resumable), run from the repository root with the venv's Python. Most
take minutes to hours on a 2-core CPU (the atlas and dictionary stages the
most); ``--only`` picks some. Work files go under ``--work`` (default
``workdir/figures``). One JSON line per figure: its commands, seconds and
exit status.
"""

import dataclasses
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
IMAGES = "docs/images"


@dataclasses.dataclass(frozen=True)
class Figure:
  """A docs figure and the commands (``{work}``: the work folder) that make it."""

  name: str
  output: str
  commands: tuple[str, ...]


FIGURES = (
    Figure("maco_units", f"{IMAGES}/maco_vs_fft_units.jpg", (
        f"bench/figures/maco_units.py --out={IMAGES}/maco_vs_fft_units.jpg",)),
    Figure("maco_atlas_full", f"{IMAGES}/maco_atlas_full.jpg", (
        "experiments/atlas.py --workdir={work}/atlas_fft",
        "experiments/atlas.py --workdir={work}/atlas_maco --param=maco",
        "bench/figures/maco_atlas_full.py --workdirs={work}/atlas_fft,{work}/atlas_maco "
        f"--grid=10 --out={IMAGES}/maco_atlas_full.jpg")),
    Figure("sae_curves", f"{IMAGES}/mixed3b_curves.jpg", (
        "bench/sae_layers.py --photos=100 --layers=mixed3b --workdir={work}/sae_layers",
        "bench/figures/sae_curves.py --dictionary={work}/sae_layers/mixed3b/dictionary.npz "
        f"--out={IMAGES}/mixed3b_curves.jpg")),
    Figure("vit_renders", f"{IMAGES}/vit_distilled_features.jpg", (
        "bench/distill_vit.py --crops_per_photo=5 --steps=250 --budget_s=1600",
        f"bench/figures/vit_renders.py --out={IMAGES}/vit_distilled_features.jpg")),
    Figure("quality", f"{IMAGES}/quality_mixed4a.png", (
        "experiments/quality.py --layer=mixed4a --units=0-31 --params=fft,maco,pixel "
        "--size=64 --steps=48 --references=3 --trials=10 --batch_units=8 "
        "--out={work}/quality_mixed4a",
        "bench/figures/copy_file.py {work}/quality_mixed4a/quality.png "
        f"{IMAGES}/quality_mixed4a.png")),
    # The defaults grid (issue 28): four GoogLeNet layers, three EfficientNet-Lite0
    # layers, four parameterizations, 32 units each (~35 + ~21 min on 2 cores).
    *(Figure(f"quality_{model}", f"{IMAGES}/quality_{model}.png", (
        f"experiments/quality.py --model={model} --layer={layers} --units=0-31 "
        "--params=fft,maco,pixel,laplacian --size=64 --steps=48 --references=3 "
        f"--trials=10 --batch_units=8 --out={{work}}/quality_{model}",
        f"bench/figures/copy_file.py {{work}}/quality_{model}/quality.png "
        f"{IMAGES}/quality_{model}.png"))
      for model, layers in (("bvlc_googlenet", "mixed3b,mixed4a,mixed4e,mixed5a"),
                            ("efficientnet_lite0", "block3,block5,block6"))),
)


def _flag(argv, name, default):
  for a in argv:
    if a.startswith(f"--{name}="):
      return a.split("=", 1)[1]
  return default


def main(argv):
  names = [f.name for f in FIGURES]
  only = _flag(argv, "only", None)
  chosen = only.split(",") if only else names
  unknown = sorted(set(chosen) - set(names))
  if unknown:
    print(f"error: unknown figure {unknown[0]!r}; known: {', '.join(names)}", file=sys.stderr)
    return 2
  work = _flag(argv, "work", "workdir/figures")
  status = 0
  for figure in (f for f in FIGURES if f.name in chosen):
    commands = [c.format(work=work) for c in figure.commands]
    if "--list" in argv:
      print(json.dumps({"figure": figure.name, "output": figure.output, "commands": commands}))
      continue
    start, code = time.perf_counter(), 0
    for command in commands:
      code = subprocess.call([sys.executable, *shlex.split(command)], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
      if code:
        break
    status = status or code
    print(json.dumps({"figure": figure.name, "output": figure.output, "commands": commands,
                      "seconds": round(time.perf_counter() - start, 1), "exit": code}),
          flush=True)
  return status


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
