r"""atlasjax's TopK SAE against overcomplete 0.3.0's, on the same activations.

Dev-only (PyTorch and overcomplete are never atlasjax dependencies)::

  pip install torch==2.13.0 overcomplete==0.3.0 'matplotlib<3.9'
  nice -n 10 python bench/sae_compare.py --layer=mixed3b --photos=40 \
      --batch_sizes=256,1024,4096

The activations come from the dev-only PyTorch GoogLeNet
(``bench/torch_googlenet.py``, the BVLC weights): every position of
``--layer`` for ``--photos`` sample photos at 224 px, one photo in
``--heldout_every`` held out. Both libraries train a TopK SAE with the same
``F``, ``k``, epochs, batch size and learning rate on the same training
vectors, in the same process, one after the other; each is scored on the same
held-out vectors with the same R² (``atlasjax.features.sae.explained_variance``).
Speed is training vectors per second: atlasjax's steady state (its first,
compiling step excluded; the compile time is printed too) and overcomplete's
whole ``train_sae`` call (PyTorch eager has no compile step). For each of
``--batch_sizes`` the two run back to back (overcomplete first), so each pair
shares the machine's load; one JSON line per library and batch size, with the
machine and its 1-minute load average.

overcomplete's package ``__init__`` imports its model zoo, which imports
torchvision; PyPI's torchvision wheels do not load with the local CPU torch
build (``torchvision::nms does not exist``), so :func:`_import_overcomplete`
puts a stand-in for ``overcomplete.models`` (the zoo, unused here: its names
raise if called) in ``sys.modules`` first. ``TopKSAE`` and ``train_sae`` are
overcomplete's own code, untouched.
"""

import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import machine  # noqa: E402

from atlasjax import data as data_lib  # noqa: E402
from atlasjax import images as images_lib  # noqa: E402
from atlasjax.features import positions as positions_lib  # noqa: E402
from atlasjax.features import sae  # noqa: E402
from atlasjax.features import train as train_lib  # noqa: E402
from atlasjax.features import pipeline  # noqa: E402
from atlasjax.models import weights  # noqa: E402

_LAYER = flags.DEFINE_string("layer", "mixed3b", "GoogLeNet layer.")
_PHOTOS = flags.DEFINE_integer("photos", 100, "Sample photos used.")
_HELDOUT = flags.DEFINE_integer("heldout_every", pipeline.DEFAULT_HELDOUT_EVERY,
                                "Hold out one photo in this many.")
_FEATURES = flags.DEFINE_integer("features", 2048, "Dictionary size F.")
_K = flags.DEFINE_integer("k", 32, "Active features per vector.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Passes over the training vectors.")
_BATCHES = flags.DEFINE_list("batch_sizes", ["1024", "4096"],
                             "Vectors per step; one pair of runs per size.")
_LR = flags.DEFINE_float("lr", train_lib.TrainConfig.lr, "Adam learning rate (both).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed (both).")
_THREADS = flags.DEFINE_integer("torch_threads", 2, "PyTorch intra-op threads.")
_DATA = flags.DEFINE_string("data", None, "Data root.")


def torch_activations(paths, layer):
  """``[N·H·W, C]`` float32 from the PyTorch GoogLeNet, photo by photo."""
  import torch  # pylint: disable=g-import-not-at-top  # dev-only
  from torch_googlenet import GoogLeNet  # pylint: disable=g-import-not-at-top
  net = GoogLeNet(weights.load_raw(data_lib.googlenet_dir(_DATA.value)))
  out = []
  with torch.no_grad():
    for lo in range(0, len(paths), 8):
      batch = np.stack([images_lib.load_for_model(p, 224) for p in paths[lo:lo + 8]])
      acts = net(torch.from_numpy(batch), stop=layer)        # [B, C, H, W]
      out.append(acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1]).numpy())
  return np.concatenate(out)


def _import_overcomplete():
  """``overcomplete.sae``, with its torchvision-based model zoo stood in for."""
  import types  # pylint: disable=g-import-not-at-top

  def unavailable(*args, **kwargs):
    raise RuntimeError("overcomplete's model zoo is not loaded in this bench")
  zoo = types.ModuleType("overcomplete.models")
  for name in ("DinoV2", "SigLIP", "ViT", "ResNet", "ConvNeXt"):
    setattr(zoo, name, unavailable)
  sys.modules.setdefault("overcomplete.models", zoo)
  import overcomplete.sae  # pylint: disable=g-import-not-at-top  # dev-only
  return overcomplete.sae


def ours(x_train, x_held, workdir, batch):
  config = train_lib.TrainConfig(
      features=_FEATURES.value, k=_K.value, epochs=_EPOCHS.value,
      batch_size=batch, lr=_LR.value, seed=_SEED.value,
      checkpoint_every=0)
  data = positions_lib.from_array(x_train, os.path.join(workdir, "train"),
                                  {"source": "torch_googlenet", "layer": _LAYER.value},
                                  shard_rows=16 * 784)
  t0 = time.perf_counter()
  result = train_lib.train(config, data, os.path.join(workdir, f"sae_{batch}"))
  wall = time.perf_counter() - t0
  d = result["dictionary"]
  x_hat = np.concatenate([np.asarray(sae.reconstruct(d, x_held[i:i + 8192]))
                          for i in range(0, len(x_held), 8192)])
  z = np.asarray(sae.encode(d, x_held[:8192]))
  return {"library": "atlasjax", "r2": sae.explained_variance(x_held, x_hat),
          "mean_l0": float((z > 0).sum(1).mean()),
          "vectors_per_s": result["vectors_per_s"], "train_wall_s": wall,
          "vectors_per_s_incl_compile": result["steps"] * config.batch_size / wall}


def overcomplete(x_train, x_held, batch):
  import torch  # pylint: disable=g-import-not-at-top  # dev-only
  oc = _import_overcomplete()
  TopKSAE, train_sae = oc.TopKSAE, oc.train_sae  # pylint: disable=invalid-name
  torch.manual_seed(_SEED.value)
  torch.set_num_threads(_THREADS.value)
  model = TopKSAE(x_train.shape[1], nb_concepts=_FEATURES.value, top_k=_K.value,
                  device="cpu")
  data = torch.utils.data.TensorDataset(torch.from_numpy(x_train))
  loader = torch.utils.data.DataLoader(data, batch_size=batch,
                                       shuffle=True, drop_last=True)
  optimizer = torch.optim.Adam(model.parameters(), lr=_LR.value)

  def criterion(x, x_hat, pre_codes, codes, dictionary):
    del pre_codes, codes, dictionary
    return (x - x_hat).square().mean()

  t0 = time.perf_counter()
  train_sae(model, loader, criterion, optimizer, nb_epochs=_EPOCHS.value,
            monitoring=0, device="cpu")
  wall = time.perf_counter() - t0
  model.eval()
  with torch.no_grad():
    outs = [model(torch.from_numpy(x_held[i:i + 8192])) for i in range(0, len(x_held), 8192)]
  x_hat = np.concatenate([o[2].numpy() for o in outs])
  z = outs[0][1].numpy()
  steps = len(loader) * _EPOCHS.value
  return {"library": "overcomplete 0.3.0", "torch": torch.__version__, "r2": sae.explained_variance(x_held, x_hat),
          "mean_l0": float((z > 0).sum(1).mean()),
          "vectors_per_s": steps * batch / wall, "train_wall_s": wall}


def main(argv):
  del argv
  paths = images_lib.list_images(data_lib.sample_dir(_DATA.value))[:_PHOTOS.value]
  train_paths, held_paths = pipeline.split(paths, _HELDOUT.value)
  x_train = torch_activations(train_paths, _LAYER.value)
  x_held = torch_activations(held_paths, _LAYER.value)
  common = {"workload": "sae_compare", "layer": _LAYER.value,
            "train_vectors": len(x_train), "heldout_vectors": len(x_held),
            "features": _FEATURES.value, "k": _K.value, "epochs": _EPOCHS.value,
            "lr": _LR.value}
  with tempfile.TemporaryDirectory() as workdir:
    for batch in map(int, _BATCHES.value):
      for run in (lambda: overcomplete(x_train, x_held, batch),
                  lambda: ours(x_train, x_held, workdir, batch)):
        line = {**common, "batch_size": batch, **run(),
                "machine": machine.describe()}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
  app.run(main)
