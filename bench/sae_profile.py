r"""Where a TopK SAE training step spends its time, and the step before/after.

  nice -n 10 python bench/sae_profile.py --batch_sizes=1024,4096 --rounds=3

On random non-negative data of ``--depth`` channels (mixed3b: 480) with
``--features`` and ``--k`` (the step's cost does not depend on the values),
for each batch size it times, in interleaved rounds (fastest round kept):

* ``parts``: the pieces of the forward pass, each jitted alone: the encoder
  product, ``lax.top_k`` against ``lax.approx_max_k``, keeping the top-k by
  scattering the values (the session-5 ``sae.topk``) against a boolean mask
  (now), the decoder product dense against a gather of the ``k`` rows;
* ``step``: one whole training step (gradient, Adam, renormalisation) as the
  session-5 code wrote it (the loss copied below: scatter top-k, AuxK always
  computed) against the library's ``train.make_step`` now, on a batch already
  on the device;
* ``feed``: the host side of the training loop alone: one epoch of
  ``Positions.batches`` (float16 shards to shuffled float32 batches) plus
  ``jax.device_put``, per batch, against the step.

One JSON line per batch size and part, with the machine and its 1-minute
load average (the machine is shared: read ratios, not absolute times).
"""

import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(__file__))
import machine  # noqa: E402

from atlasjax.features import positions as positions_lib  # noqa: E402
from atlasjax.features import sae  # noqa: E402
from atlasjax.features import train as train_lib  # noqa: E402

_BATCHES = flags.DEFINE_list("batch_sizes", ["1024", "4096"], "Batch sizes.")
_DEPTH = flags.DEFINE_integer("depth", 480, "Channels C (mixed3b: 480).")
_FEATURES = flags.DEFINE_integer("features", 2048, "Dictionary size F.")
_K = flags.DEFINE_integer("k", 32, "Active features per vector.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Calls per round (fastest kept).")


def _scatter_topk(values, k):
  """Session 5's ``sae.topk``: scatter the kept values into zeros."""
  kept, index = jax.lax.top_k(values, k)
  rows = jnp.arange(values.shape[0])[:, None]
  return jnp.zeros_like(values).at[rows, index].set(kept)


def _losses_session5(params, x, since_fired, config):
  """Session 5's loss, verbatim but for the name of its top-k."""
  pre = jax.nn.relu((x - params["decoder_bias"]) @ params["encoder"]
                    + params["encoder_bias"])
  z = _scatter_topk(pre, config.k)
  x_hat = z @ params["decoder"] + params["decoder_bias"]
  mse = jnp.mean(jnp.sum((x - x_hat) ** 2, -1))
  dead = since_fired >= config.dead_after
  residual = jax.lax.stop_gradient(x - x_hat)
  z_aux = _scatter_topk(jnp.where(dead, pre, 0.0), config.aux_k or 2 * config.k)
  aux = jnp.mean(jnp.sum((residual - z_aux @ params["decoder"]) ** 2, -1))
  aux = jnp.where(dead.any(), aux / jnp.maximum(
      jnp.mean(jnp.sum(residual ** 2, -1)), sae.NORM_EPS), 0.0)
  total = mse + config.aux_coef * aux
  return total, (mse, aux, (z > 0).any(0), (z > 0).sum(-1).mean())


def _session5_step(config, optimizer):
  """``train.make_step`` of session 5: the same step around the old loss."""
  return train_lib.make_step(config, optimizer, losses=_losses_session5)


def _stepper(step, state):
  """A zero-argument call running ``step`` on its own (donated) state."""
  held = [jax.tree_util.tree_map(jnp.copy, state)]

  def call(x):
    held[0] = step(held[0], x)[0]
    return held[0]
  return call


def _fastest(fn, repeats):
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t0)
  return best


def _parts(x, params, k):
  """The forward pass's pieces as ``{name: zero-argument jitted call}``."""
  pre = jax.nn.relu(x @ params["encoder"])
  kept, index = jax.lax.top_k(pre, k)
  fns = {
      "encoder x @ W_enc": (jax.jit(lambda x, e: x @ e), (x, params["encoder"])),
      "lax.top_k": (jax.jit(lambda v: jax.lax.top_k(v, k)), (pre,)),
      "lax.approx_max_k": (jax.jit(lambda v: jax.lax.approx_max_k(v, k)), (pre,)),
      "keep top-k: scatter values": (jax.jit(lambda v: _scatter_topk(v, k)), (pre,)),
      "keep top-k: mask (now)": (jax.jit(lambda v: sae.topk(v, k)), (pre,)),
      "decoder z @ W_dec (dense)": (jax.jit(lambda z, d: z @ d),
                                    (sae.topk(pre, k), params["decoder"])),
      "decoder gather of k rows": (jax.jit(
          lambda v, i, d: jnp.einsum("bk,bkc->bc", v, d[i])),
          (kept, index, params["decoder"])),
  }
  return {name: (lambda f=f, a=a: f(*a)) for name, (f, a) in fns.items()}


def _feed_seconds(data, batch, sharded_put):
  """Seconds per batch of one epoch of the host side of the loop."""
  n, t0 = 0, time.perf_counter()
  for x in data.batches(batch, 0, 0):
    jax.block_until_ready(sharded_put(x))
    n += 1
  return (time.perf_counter() - t0) / n


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  for batch in map(int, _BATCHES.value):
    config = train_lib.TrainConfig(features=_FEATURES.value, k=_K.value,
                                   batch_size=batch)
    optimizer = optax.adam(config.lr, eps=train_lib.ADAM_EPS)
    rows = np.maximum(rng.normal(size=(4 * batch, _DEPTH.value)), 0)
    x = jnp.asarray(rows[:batch], jnp.float32)
    state = train_lib.init_state(config, rows[:batch], optimizer)
    steps = {"session 5 step": _session5_step(config, optimizer),
             "library step (now)": train_lib.make_step(config, optimizer)}
    calls = _parts(x, state["params"], config.k)
    calls.update({name: (lambda s=_stepper(s, state): s(x))
                  for name, s in steps.items()})
    with tempfile.TemporaryDirectory() as folder:
      data = positions_lib.from_array(rows.astype(np.float16), folder,
                                      {"source": "random"}, shard_rows=batch)
      calls["feed: batches + device_put"] = None
      for fn in calls.values():
        if fn is not None:
          jax.block_until_ready(fn())                     # compile
      best = {name: float("inf") for name in calls}
      for _ in range(_ROUNDS.value):
        for name, fn in calls.items():
          seconds = (_feed_seconds(data, batch, jax.device_put) if fn is None
                     else _fastest(fn, _REPEATS.value))
          best[name] = min(best[name], seconds)
    for name, seconds in best.items():
      print(json.dumps({"workload": "sae_profile", "part": name, "batch_size": batch,
                        "depth": _DEPTH.value, "features": _FEATURES.value,
                        "k": _K.value, "ms": round(1000 * seconds, 2),
                        "vs_library_step": round(seconds / best["library step (now)"], 3),
                        "machine": machine.describe()}), flush=True)


if __name__ == "__main__":
  app.run(main)
