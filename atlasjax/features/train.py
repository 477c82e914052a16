"""Training a TopK sparse autoencoder on an all-positions collection.

The recipe is Gao et al. 2024's:

* encoder initialised as the decoder's transpose, decoder rows random unit
  vectors, decoder bias the mean of a first sample of (scaled) data;
* inputs divided by one ``input_scale`` (the RMS of the data's entries), so the
  learning rate means the same on every layer and model;
* loss: the squared reconstruction error, plus ``aux_coef`` times AuxK: the
  ``aux_k`` largest pre-activations among *dead* features (not fired during
  the last ``dead_after`` training vectors) reconstruct the residual, which
  gives dead features gradient again;
* decoder rows renormalised after every step, and the part of their gradient
  parallel to them removed before the step;
* Adam (optax).

The step is one jitted function; batches are sharded over a 1-D mesh of the
local devices (``"batch"`` axis; the dictionary is replicated), so several
devices split every batch. Training is deterministic given ``seed`` (the
initial dictionary from ``PRNGKey(seed)``, the batch order from
``(seed, epoch)``) and resumable: orbax checkpoints of the whole state are
written every ``checkpoint_every`` steps and at the end, and a rerun
continues from the latest one, mid-epoch if need be, giving the same result as
an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from atlasjax import progress
from atlasjax.features import positions as positions_lib
from atlasjax.features import sae
from atlasjax.features import store

CONFIG_FILE = "train_config.json"
CHECKPOINTS = "checkpoints"
# Gao et al.: AuxK coefficient 1/32; Adam epsilon 6.25e-10.
DEFAULT_AUX_COEF = 1.0 / 32
ADAM_EPS = 6.25e-10
# Vectors used to set input_scale and the initial decoder bias.
INIT_SAMPLE = 8192
# Held-out vectors encoded per call in evaluation.
EVAL_CHUNK = 8192


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train a dictionary; the single source of its defaults.

  Attributes:
    features: dictionary size ``F``.
    k: active features per vector.
    epochs: passes over the collection.
    batch_size: vectors per step (rounded down to a multiple of the devices).
    lr: Adam learning rate.
    batch_topk: BatchTopK (Bussmann et al. 2024) instead of per-vector TopK
      during training; the saved dictionary encodes with per-vector TopK.
    aux_k: features in the AuxK reconstruction (default ``2 · k``).
    aux_coef: weight of the AuxK loss.
    dead_after: a feature not fired during this many training vectors is dead.
    seed: initial dictionary and batch order.
    checkpoint_every: steps between checkpoints (0: only at the end).
  """
  features: int = 2048
  k: int = 32
  epochs: int = 4
  batch_size: int = 4096
  lr: float = 1e-3
  batch_topk: bool = False
  aux_k: int | None = None
  aux_coef: float = DEFAULT_AUX_COEF
  dead_after: int = 1_000_000
  seed: int = 0
  checkpoint_every: int = 200

  def to_json(self) -> dict:
    """The settings as a JSON-ready dict (recorded beside checkpoints)."""
    return dataclasses.asdict(self)


def _mesh() -> Mesh:
  return Mesh(np.array(jax.local_devices()), ("batch",))


def init_state(config: TrainConfig, sample: np.ndarray,
               optimizer: optax.GradientTransformation) -> dict:
  """The initial training state from a ``[N, C]`` sample of the data."""
  scale = float(np.sqrt(np.mean(np.square(sample, dtype=np.float64))))
  scale = scale if scale > 0 else 1.0
  depth = sample.shape[1]
  decoder = sae.unit_rows(jax.random.normal(
      jax.random.PRNGKey(config.seed), (config.features, depth)))
  params = {"encoder": decoder.T, "encoder_bias": jnp.zeros(config.features),
            "decoder": decoder,
            "decoder_bias": jnp.asarray(sample.mean(0) / scale, jnp.float32)}
  return {"params": params, "opt_state": optimizer.init(params),
          "since_fired": jnp.zeros(config.features, jnp.int32),
          "step": jnp.zeros((), jnp.int32),
          "input_scale": jnp.asarray(scale, jnp.float32)}


def _losses(params, x, since_fired, config: TrainConfig):
  """Reconstruction and AuxK losses of a scaled batch, and which features fired."""
  pre = jax.nn.relu((x - params["decoder_bias"]) @ params["encoder"]
                    + params["encoder_bias"])
  select = sae.batch_topk if config.batch_topk else sae.topk
  z = select(pre, config.k)
  x_hat = z @ params["decoder"] + params["decoder_bias"]
  mse = jnp.mean(jnp.sum((x - x_hat) ** 2, -1))
  dead = since_fired >= config.dead_after
  residual = jax.lax.stop_gradient(x - x_hat)

  def aux_loss(operands):
    pre, decoder = operands
    z_aux = sae.topk(jnp.where(dead, pre, 0.0), config.aux_k or 2 * config.k)
    aux = jnp.mean(jnp.sum((residual - z_aux @ decoder) ** 2, -1))
    return aux / jnp.maximum(jnp.mean(jnp.sum(residual ** 2, -1)), sae.NORM_EPS)

  # Without dead features AuxK is zero: a cond skips its top-k and its
  # [B, F] x [F, C] product (and their gradients), a third of the step.
  aux = jax.lax.cond(dead.any(), aux_loss, lambda _: jnp.zeros((), x.dtype),
                     (pre, params["decoder"]))
  total = mse + config.aux_coef * aux
  return total, (mse, aux, (z > 0).any(0), (z > 0).sum(-1).mean())


def _step_key(config: TrainConfig) -> TrainConfig:
  """``config`` without the fields the step program does not read."""
  return dataclasses.replace(config, epochs=1, seed=0, checkpoint_every=0)


@functools.lru_cache(maxsize=8)
def _program(key: TrainConfig):
  """``(optimizer, jitted step)`` for a step key: runs that differ only in
  seed, epochs or checkpointing (a resumed run, a second seed) reuse the
  compiled step."""
  optimizer = optax.adam(key.lr, eps=ADAM_EPS)
  return optimizer, make_step(key, optimizer)


def make_step(config: TrainConfig, optimizer: optax.GradientTransformation,
              losses=None):
  """``(state, batch [B, C] raw activations) -> (state, metrics)``, jitted.

  ``losses`` (default: the TopK reconstruction + AuxK loss of this module)
  is ``(params, x, since_fired, config) -> (total, (mse, aux, fired, l0))``;
  ``bench/sae_profile.py`` passes an earlier loss to time the two steps.
  """
  losses = losses or _losses

  def step(state, batch):
    params = state["params"]
    x = batch / state["input_scale"]
    grads, (mse, aux, fired, l0) = jax.grad(losses, has_aux=True)(
        params, x, state["since_fired"], config)
    # Only the decoder rows' directions may change: drop the radial part.
    d = params["decoder"]
    grads["decoder"] -= jnp.sum(grads["decoder"] * d, -1, keepdims=True) * d
    updates, opt_state = optimizer.update(grads, state["opt_state"], params)
    params = optax.apply_updates(params, updates)
    params["decoder"] = sae.unit_rows(params["decoder"])
    since = jnp.where(fired, 0, state["since_fired"] + x.shape[0])
    new = {**state, "params": params, "opt_state": opt_state,
           "since_fired": since, "step": state["step"] + 1}
    return new, {"mse": mse, "aux": aux, "l0": l0}
  return jax.jit(step, donate_argnums=0)


def dictionary_of(state: dict, config: TrainConfig) -> sae.Dictionary:
  """The :class:`~atlasjax.features.sae.Dictionary` held by a training state."""
  p = state["params"]
  return sae.Dictionary(p["encoder"], p["encoder_bias"], p["decoder"],
                        p["decoder_bias"], config.k, float(state["input_scale"]))


def _check_config(workdir: pathlib.Path, config: TrainConfig) -> None:
  path = workdir / CONFIG_FILE
  if path.exists():
    old = store.load_json(path)
    diff = [f"{k} = {old.get(k)!r} there, {v!r} now"
            for k, v in config.to_json().items() if old.get(k) != v]
    if diff:
      raise ValueError(f"{workdir} holds a dictionary trained with other "
                       f"settings ({'; '.join(diff)}); pass another --workdir "
                       "or delete it.")
  store.save_json(path, config.to_json())


def train(config: TrainConfig, data: positions_lib.Positions,
          workdir: os.PathLike | str,
          stop_after: int | None = None,
          on_step: Callable[[int, dict], None] | None = None) -> dict:
  """Trains (or resumes training) a dictionary on ``data``.

  Length: one resumable loop (restore, epochs of sharded steps, checkpoints,
  progress), kept together so the resume logic reads in one place.

  Args:
    config: a :class:`TrainConfig`.
    data: the training collection.
    workdir: where ``train_config.json`` and ``checkpoints/`` live.
    stop_after: stop after this many steps in this call (tests interrupt a
      run this way); the next call resumes.
    on_step: ``(step, metrics) -> None`` called at checkpoints.

  Returns:
    ``{"state", "dictionary", "steps", "vectors_per_s", "done"}``.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top  # heavy

  workdir = pathlib.Path(workdir).resolve()   # orbax wants absolute paths
  _check_config(workdir, config)
  mesh = _mesh()
  batch = config.batch_size // mesh.size * mesh.size
  per_epoch = data.batches_per_epoch(batch)
  if per_epoch == 0:
    raise ValueError(f"The collection holds {data.rows} vectors, fewer than one "
                     f"batch of {batch}; lower --batch_size or add photos.")
  total = per_epoch * config.epochs
  optimizer, step_fn = _program(_step_key(config))
  state = init_state(config, data.all(INIT_SAMPLE), optimizer)
  manager = ocp.CheckpointManager(
      workdir / CHECKPOINTS, options=ocp.CheckpointManagerOptions(max_to_keep=2))
  if manager.latest_step() is not None:
    state = manager.restore(manager.latest_step(),
                            args=ocp.args.StandardRestore(state))
    progress.note(f"dictionary: resuming at step {int(state['step'])} of {total}")
  replicated = NamedSharding(mesh, PartitionSpec())
  sharded = NamedSharding(mesh, PartitionSpec("batch"))
  state = jax.device_put(state, replicated)
  start = int(state["step"])
  done, timed, t0, metrics = 0, 0, None, {}
  with progress.bar(total=total, desc="dictionary", unit="step") as bar:
    bar.update(start)
    for epoch in range(start // per_epoch, config.epochs):
      skip = start - epoch * per_epoch if epoch == start // per_epoch else 0
      for x in data.batches(batch, config.seed, epoch, skip=skip):
        if stop_after is not None and done >= stop_after:
          break
        state, metrics = step_fn(state, jax.device_put(x, sharded))
        done += 1
        if done == 1:   # the first step compiles: time the rest
          jax.block_until_ready(state)
          t0 = time.perf_counter()
        else:
          timed += 1
        bar.update(1)
        step = start + done
        if config.checkpoint_every and step % config.checkpoint_every == 0:
          manager.save(step, args=ocp.args.StandardSave(state))
          if on_step:
            on_step(step, jax.device_get(metrics))
  jax.block_until_ready(state)
  elapsed = time.perf_counter() - t0 if t0 is not None else 0.0
  final = start + done
  if done and manager.latest_step() != final:
    manager.save(final, args=ocp.args.StandardSave(state), force=True)
  manager.wait_until_finished()
  manager.close()
  return {"state": state, "dictionary": dictionary_of(state, config),
          "steps": final, "done": final >= total,
          "vectors_per_s": timed * batch / elapsed if elapsed > 0 else None,
          "last": {k: float(v) for k, v in jax.device_get(metrics).items()}}


@functools.partial(jax.jit, static_argnames=("k",))
def _encode_arrays(arrays, scale, x, k):
  return sae.encode(sae.Dictionary(*arrays, k=k, input_scale=scale), x)


@jax.jit
def _decode_arrays(arrays, scale, z):
  return sae.decode(sae.Dictionary(*arrays, k=1, input_scale=scale), z)


def _arrays(d: sae.Dictionary):
  return tuple(getattr(d, name) for name in sae.ARRAYS)


def _encode(d, x):
  return _encode_arrays(_arrays(d), d.input_scale, x, k=d.k)


def _decode(d, z):
  return _decode_arrays(_arrays(d), d.input_scale, z)


def evaluate(d: sae.Dictionary, data: positions_lib.Positions,
             dead: np.ndarray | None = None) -> dict:
  """Held-out metrics: R², mean L0, features never active.

  R² (:func:`atlasjax.features.sae.explained_variance`) accumulates over
  chunks in float64, so it needs one pass and bounded memory.
  """
  encode = lambda x: _encode(d, x)
  decode = lambda z: _decode(d, z)
  n, sums, squares, residual, l0 = 0, 0.0, 0.0, 0.0, 0.0
  active = np.zeros(d.features, bool)
  for name in data.shards:
    rows = np.asarray(data.load(name), np.float32)
    for lo in range(0, len(rows), EVAL_CHUNK):
      x = rows[lo:lo + EVAL_CHUNK]
      z = encode(x)
      x_hat = np.asarray(decode(z), np.float64)
      z = np.asarray(z)
      n += len(x)
      sums = sums + x.sum(0, dtype=np.float64)
      squares = squares + np.square(x, dtype=np.float64).sum(0)
      residual += np.square(x - x_hat).sum()
      l0 += (z > 0).sum()
      active |= (z > 0).any(0)
  total = (squares - sums ** 2 / n).sum()
  out = {"r2": float(1 - residual / total), "mean_l0": float(l0 / n),
         "heldout_vectors": n,
         "never_active_fraction": float(1 - active.mean())}
  if dead is not None:
    out["dead_fraction"] = float(np.mean(dead))
  return out
