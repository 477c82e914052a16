"""The quality suite: each measure against a plain NumPy computation on a
small case, and experiments/quality.py end to end on the toy CNN (format, trial
images, a trial recomputed from the saved PNGs, resume, refusal, one-line
errors, the scores on the Microscope's pages in headless Chromium)."""

import dataclasses
import json
import pathlib
import re

import jax
import numpy as np
import pytest
from PIL import Image

from atlasjax import models
from atlasjax.optvis import render
from atlasjax.quality import path as path_lib
from atlasjax.quality import psychophysics
from atlasjax.quality import references
from atlasjax.quality import report
from atlasjax.quality import suite as suite_lib
from atlasjax.quality import transfer
import toy_model
from toy_judge import TOY_JUDGE

def _cos(u, v):
  return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))


def test_judge_trials_is_the_written_rule():
  rng = np.random.default_rng(0)
  ref_max, ref_min = rng.normal(size=(9, 6)), rng.normal(size=(9, 6))
  q_max, q_min = rng.normal(size=(12, 6)), rng.normal(size=(12, 6))
  def score(q):  # mean cosine to max refs minus mean cosine to min refs, by loops
    return (np.mean([_cos(q, r) for r in ref_max])
            - np.mean([_cos(q, r) for r in ref_min]))
  expected = [score(a) > score(b) for a, b in zip(q_max, q_min)]
  got = psychophysics.judge_trials(ref_max, ref_min, q_max, q_min)
  np.testing.assert_array_equal(got, expected)
  assert 0 < sum(expected) < 12   # both outcomes occur: the case discriminates
  # Swapping the max and min references flips every decision.
  np.testing.assert_array_equal(
      psychophysics.judge_trials(ref_min, ref_max, q_max, q_min), ~got)


def test_bootstrap_interval_matches_the_normal_approximation():
  correct = np.r_[np.ones(280), np.zeros(120)]         # 70 % of 400 trials
  lo, hi = psychophysics.bootstrap_interval(correct, seed=3, resamples=4000)
  half = 1.96 * np.sqrt(0.7 * 0.3 / 400)                # Wald interval
  assert abs(lo - (0.7 - half)) < 0.01 and abs(hi - (0.7 + half)) < 0.01
  assert (lo, hi) == psychophysics.bootstrap_interval(correct, seed=3, resamples=4000)
  acc = psychophysics.accuracy(correct, seed=3)
  assert acc.accuracy == pytest.approx(0.7) and acc.trials == 400
  with pytest.raises(ValueError, match="no trials"):
    psychophysics.bootstrap_interval([], seed=0)


def test_embed_is_the_last_feature_map_averaged(judge):
  model, params = judge
  images = np.random.default_rng(1).uniform(size=(3, 40, 40, 3)).astype(np.float32)
  got = psychophysics.embed(model, params, images, size=48, batch_size=2)
  resized = np.asarray(jax.image.resize(images, (3, 48, 48, 3), "linear"))
  want = np.asarray(model.apply(params, resized, layers=("conv2",))["conv2"]).mean(axis=(1, 2))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert psychophysics.default_judge("bvlc_googlenet") == "efficientnet_lite0"
  assert psychophysics.default_judge("efficientnet_lite0") == "bvlc_googlenet"
  with pytest.raises(ValueError, match="cam_layer"):
    psychophysics.embedding_layer(dataclasses.replace(model, cam_layer=None))


def test_natural_trials_are_held_out_extremes():
  values = np.random.default_rng(2).normal(size=40)
  split = references.split_photos(40, seed=5)
  assert not set(split.reference) & set(split.query)
  trials = references.natural_trials(values, split, references=3, trials=4)
  ref_sorted = split.reference[np.argsort(values[split.reference])]
  query_sorted = split.query[np.argsort(values[split.query])]
  np.testing.assert_array_equal(trials.ref_max, ref_sorted[::-1][:3])
  np.testing.assert_array_equal(trials.ref_min, ref_sorted[:3])
  np.testing.assert_array_equal(trials.query_max, query_sorted[::-1][:4])
  np.testing.assert_array_equal(trials.query_min, query_sorted[:4])
  with pytest.raises(ValueError, match="more photos"):
    references.natural_trials(values, split, references=11, trials=4)


def test_path_curve_against_loops():
  rng = np.random.default_rng(4)
  layers = ("a", "b")
  vis = {k: rng.uniform(size=(3, 5)) for k in layers}
  top = {k: rng.uniform(size=(4, 5)) for k in layers}
  rand = {k: rng.uniform(size=(20, 5)) for k in layers}
  # At layer b the exemplars share a direction that random photos lack, and
  # the visualizations have it too: they rank above every random photo.
  top["b"] = np.array([1.0, 1.0, 0, 0, 0]) + 0.05 * rng.uniform(size=(4, 5))
  vis["b"] = top["b"][:3] + 0.01
  curve = path_lib.path_curve(vis, top, rand)
  for i, k in enumerate(layers):
    close = lambda x: np.mean([_cos(x, e) for e in top[k]])  # noqa: E731
    v = np.mean([close(x) for x in vis[k]])
    r = np.array([close(x) for x in rand[k]])
    loo = [np.mean([_cos(top[k][a], top[k][b]) for b in range(4) if b != a])
           for a in range(4)]
    assert curve.visualization[i] == pytest.approx(v)
    assert curve.floor[i] == pytest.approx(r.mean())
    assert curve.exemplars[i] == pytest.approx(np.mean(loo))
    assert curve.percentile[i] == pytest.approx(np.mean(r < v))
    assert curve.exemplar_percentile[i] == pytest.approx(
        np.mean([np.mean(r < e) for e in loo]))
  assert curve.percentile[1] == 1.0
  assert curve.score == pytest.approx(curve.percentile.mean())


def test_transfer_rates_and_activation_ratio():
  logits = np.array([[3.0, 1, 2, 0, -1, -2, -3], [0, 5, 4, 3, 2, 1, -1.0]])
  classes = np.array([0, 6])
  rates = transfer.hit_rates(logits, classes)
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  assert rates == pytest.approx({"top1": 0.5, "top5": 0.5,
                                 "target_prob": (p[0, 0] + p[1, 6]) / 2})
  np.testing.assert_allclose(transfer.class_set(3), [250, 500, 749])
  np.testing.assert_allclose(transfer.activation_ratio([2.0, 3.0], [4.0, 1.5]), [0.5, 2.0])


def test_paired_comparison_against_numpy():
  rng = np.random.default_rng(3)
  units = lambda acc, path: {  # noqa: E731
      f"{layer}:{u}": {"layer": layer, "synthetic": acc[i], "path_check": path[i]}
      for i, (layer, u) in enumerate([("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)])}
  acc_a, acc_b = rng.random(5), rng.random(5)
  path_a, path_b = rng.random(5), np.array([*rng.random(4), np.nan])
  result = {"settings": {"seed": 7, "resamples": 500},
            "params": {"new": {"units": units(acc_a, path_a)},
                       "base": {"units": units(acc_b, path_b)}}}
  c = report.compare(result, "new", "base")
  d = acc_a - acc_b
  means = np.random.default_rng(7).choice(d, size=(500, 5)).mean(1)
  assert c["units"] == 5
  assert c["synthetic"]["difference"] == pytest.approx(d.mean(), abs=1e-4)
  np.testing.assert_allclose(c["synthetic"]["ci95"], np.percentile(means, [2.5, 97.5]),
                             atol=1e-4)
  assert (c["synthetic"]["wins"], c["synthetic"]["losses"]) == ((d > 0).sum(), (d < 0).sum())
  finite = (path_a - path_b)[:4]   # a NaN path check (no exemplar spread) is left out
  assert c["path_check"]["difference"] == pytest.approx(finite.mean(), abs=1e-4)
  layer_b = report.compare(result, "new", "base", layer="b")
  assert layer_b["units"] == 2
  assert layer_b["synthetic"]["difference"] == pytest.approx(d[3:].mean(), abs=1e-4)
  with pytest.raises(ValueError, match="share no scored unit in c"):
    report.compare(result, "new", "base", layer="c")


def test_synthetic_references_drive_the_unit_up_and_down(toy):
  model, params = toy
  # The settings the script test below renders with (FLAGS): one compile for both.
  cfg = render.RenderConfig(size=16, steps=8, lr=0.1, transforms="none", chunk_size=8)
  maxes, mins = references.render_synthetic(model, params, "conv2", [3, 5], cfg,
                                            jax.random.PRNGKey(0), references=2)
  assert maxes.shape == mins.shape == (2, 2, 16, 16, 3)
  for u, unit in enumerate((3, 5)):
    acts = lambda x: np.asarray(model.apply(params, x, layers=("conv2",))["conv2"])[  # noqa: E731
        ..., unit].mean(axis=(1, 2))
    assert acts(maxes[u]).min() > acts(mins[u]).max()
  # Unit 5 renders the same images alone (seed ids per unit, same program).
  alone, _ = references.render_synthetic(model, params, "conv2", [5], cfg,
                                         jax.random.PRNGKey(0), references=2)
  np.testing.assert_allclose(alone[0], maxes[1], atol=1e-6)


CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--model=toy_cnn", "--judge=toy_judge", "--layer=conv2", "--params=fft",
         "--size=16", "--steps=8", "--lr=0.1", "--transforms=none", "--references=2",
         "--trials=2", "--batch_units=2")


@pytest.fixture
def toy_registry(monkeypatch):
  """``models.get`` / ``models.load`` also know the toy CNN and the toy judge."""
  toys = {"toy_cnn": toy_model.TOY_MODEL, "toy_judge": TOY_JUDGE}
  get, load = models.get, models.load
  monkeypatch.setattr(models, "get", lambda name="bvlc_googlenet", weights=None:
                      toys.get(name) or get(name, weights))
  monkeypatch.setattr(models, "load", lambda name="bvlc_googlenet", data=None, weights=None: (
      (toys[name], toy_model.toy_params()) if name in toys else load(name, data, weights)))


def _png(path):
  return np.asarray(Image.open(path), np.float32) / 255


def test_quality_script_end_to_end(run_script, toy_registry, eight_photos, tmp_path,
                                   monkeypatch):
  out = tmp_path / "q"
  r = run_script("quality", *FLAGS, "--units=0-2", f"--photos={eight_photos}", f"--out={out}")
  assert r.code == 0, r
  result = json.loads((out / "quality.json").read_text())
  assert result["judge"] == "toy_judge" and "16 values" in result["embedding"]
  assert set(result["params"]) == {"fft"}
  record = result["params"]["fft"]["units"]["conv2:1"]
  for key in ("synthetic", "natural", "trials", "ci95", "path_check"):
    assert key in record
  assert record["trials"] == 2 and len(record["path_curve"]["layers"]) == 2
  assert "| fft | conv2 | 3 | 6 |" in (out / "quality.md").read_text()
  assert (out / "quality.png").stat().st_size > 0

  # Recompute unit 1's synthetic trials from the images saved for them.
  folder = out / "trials" / "fft" / "conv2_1"
  load = lambda name, n: np.stack([_png(folder / f"{name}_{i}.png") for i in range(n)])  # noqa: E731
  judge, params = TOY_JUDGE, toy_model.toy_params()
  e = {name: psychophysics.embed(judge, params, load(name, 2))
       for name in ("ref_max", "ref_min", "query_max", "query_min")}
  again = psychophysics.judge_trials(e["ref_max"], e["ref_min"], e["query_max"], e["query_min"])
  assert again.astype(int).tolist() == record["correct"]["synthetic"]
  natural = out / "trials" / "natural" / "conv2_1"
  assert sorted(p.name for p in natural.iterdir()) == sorted(
      f"{k}_{i}.png" for k in ("ref_max", "ref_min", "query_max", "query_min") for i in range(2))

  # Resume: nothing is rendered again; one more unit renders only that unit.
  scored = []
  real = suite_lib.score_units
  monkeypatch.setattr(suite_lib, "score_units",
                      lambda *a, **k: scored.append(list(a[6])) or real(*a, **k))
  r = run_script("quality", *FLAGS, "--units=0-2", f"--photos={eight_photos}", f"--out={out}")
  assert r.code == 0 and scored == [], r
  r = run_script("quality", *FLAGS, "--units=0-3", f"--photos={eight_photos}", f"--out={out}")
  assert r.code == 0 and scored == [[3]], (r, scored)
  assert len(json.loads((out / "quality.json").read_text())["params"]["fft"]["units"]) == 4
  # A layer added on resume: its photo values are computed, only its units render.
  before_npz = dict(np.load(out / "photos.npz"))
  added = [f for f in FLAGS if not f.startswith("--layer=")] + ["--layer=conv2,conv1"]
  r = run_script("quality", *added, "--units=0-3", f"--photos={eight_photos}", f"--out={out}")
  assert r.code == 0 and scored == [[3], [0, 1], [2, 3]], (r, scored)
  after_npz = dict(np.load(out / "photos.npz"))
  assert set(after_npz) == set(before_npz) | {"values_conv1"}
  for name, value in before_npz.items():
    np.testing.assert_array_equal(after_npz[name], value)
  assert after_npz["values_conv1"].shape == (8, 8)
  units = json.loads((out / "quality.json").read_text())["params"]["fft"]["units"]
  assert sorted(units) == [f"conv{l}:{u}" for l in (1, 2) for u in range(4)]
  assert "| fft | all | 8 |" in (out / "quality.md").read_text()

  # Other settings are refused in one line; nothing is removed.
  before = sorted(p for p in out.rglob("*"))
  other = [f for f in FLAGS if not f.startswith("--steps=")] + ["--steps=5"]
  r = run_script("quality", *other, "--units=0-2", f"--photos={eight_photos}", f"--out={out}")
  assert r.code == 2 and len(r.error_lines) == 1 and "steps" in r.error_lines[0], r
  assert sorted(p for p in out.rglob("*")) == before
  for bad, needle in (("--units=1-x", "--units"), ("--units=99", "out of range"),
                      ("--params=nosuch", "nosuch")):
    r = run_script("quality", *FLAGS, "--units=0-2", bad, f"--photos={eight_photos}",
                   f"--out={tmp_path / 'x'}")
    assert r.code == 2 and len(r.error_lines) == 1 and needle in r.error_lines[0], r
    assert "Traceback" not in r.err

  _scores_on_microscope(out / "quality.json", eight_photos, tmp_path / "ms")


def _scores_on_microscope(quality, photos, workdir):
  """The scores on the unit page and the layer grid sorted by them."""
  from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel
  from atlasjax import images as images_lib  # pylint: disable=import-outside-toplevel
  from atlasjax import microscope  # pylint: disable=import-outside-toplevel
  from atlasjax.microscope import quality as ms_quality  # pylint: disable=import-outside-toplevel
  # A site without renders (nothing to compile): conv2's units, no images.
  config = microscope.MicroscopeConfig(layers=(), size=16, steps=1)
  microscope.write_site(toy_model.TOY_MODEL, config, workdir, ("conv2",), {},
                        images_lib.list_images(photos))
  assert ms_quality.add_quality_scores(workdir, quality) == ["conv2"]
  result = json.loads(quality.read_text())
  fft = result["params"]["fft"]["units"]
  if not pathlib.Path(CHROMIUM).is_file():
    pytest.fail(f"needs {CHROMIUM}: apt-get install -y chromium", pytrace=False)
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((workdir / "index.html").resolve().as_uri() + "#/unit/conv2/2")
    page.wait_for_function("document.getElementById('microscope').dataset.ready === '1'")
    row = page.locator(".ms-quality tr[data-param='fft'] td")
    assert row.nth(1).inner_text().startswith(f"{100 * fft['conv2:2']['synthetic']:.0f} %")
    # Two decimals (JavaScript rounds halves up, Python to even: compare values).
    assert abs(float(row.nth(3).inner_text()) - fft["conv2:2"]["path_check"]) <= 0.005 + 1e-9
    page.goto((workdir / "index.html").resolve().as_uri() + "#/layer/conv2")
    page.wait_for_function("document.getElementById('microscope').dataset.view === 'grid'")
    page.select_option("#ms-sort", "fft:p")
    tiles = page.locator("a.ms-tile").evaluate_all("ts => ts.map(t => t.dataset.unit)")
    scored = sorted(range(4), key=lambda u: (-fft[f"conv2:{u}"]["path_check"], u))
    assert [int(re.sub(r"^conv2:", "", t)) for t in tiles[:4]] == scored
    assert len(tiles) == 16
    page.select_option("#ms-sort", "")
    assert page.locator("a.ms-tile").first.get_attribute("data-unit") == "conv2:0"
    browser.close()
  assert not errors, errors
