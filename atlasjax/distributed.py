"""Many processes, one job: the little atlasjax needs on top of ``jax.distributed``.

JAX runs multi-host jobs as *multi-controller SPMD*: the same program is
started once per host (or per accelerator), ``jax.distributed.initialize``
connects the processes through a coordinator, and ``jax.devices()`` then lists
every device of every process: the *global* devices that a
:class:`jax.sharding.Mesh` can span. atlasjax builds on exactly that and adds
four small things:

* :func:`initialize` starts the runtime when this run is one of several
  processes: from explicit arguments (the scripts' ``--coordinator_address``,
  ``--num_processes``, ``--process_id`` flags), from JAX's own environment
  variables (``JAX_COORDINATOR_ADDRESS``, …), or from the cluster environments
  JAX detects itself (SLURM, Open MPI, Cloud TPU, Kubernetes). A run with none of
  these stays an ordinary single process. It returns the :class:`ProcessLayout`.
* :func:`layout` reports the process layout of the current run (index, count,
  local and global device counts), the record that manifests keep.
* :func:`owned` splits ``n`` work items (collection shards, icon chunks) into
  disjoint contiguous slices, one per process, deterministically.
* :func:`barrier` waits until every process reaches the same named point, with
  a timeout (a process that never arrives raises instead of hanging the job).

Processes share the work directory (a shared file system on several hosts):
each writes only files it owns, atomically, and process 0 writes the shared
ones (manifests, ``atlas.json``, PNGs, the viewer) after a barrier.

When a process dies, JAX's runtime stops the whole job (its health checking;
a restarted process may not rejoin a running job). Rerunning every process
with the same command resumes: whatever any process finished is kept.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import jax

# Environment variables JAX itself reads in ``jax.distributed.initialize``.
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
# CPU-only runs need a cross-process collectives backend for global meshes.
CPU_COLLECTIVES = "gloo"
# Long stages (a UMAP fit on process 0) keep the others waiting at a barrier.
DEFAULT_BARRIER_TIMEOUT_S = 24 * 3600
_BARRIER_PREFIX = "atlasjax:"


class DistributedError(RuntimeError):
  """The process layout is inconsistent or a peer did not arrive in time."""


@dataclasses.dataclass(frozen=True)
class ProcessLayout:
  """Where this process sits in the job."""
  process_index: int
  process_count: int
  local_devices: int
  global_devices: int
  platform: str

  @property
  def is_main(self) -> bool:
    """Process 0 writes the files every process shares."""
    return self.process_index == 0

  def to_json(self) -> dict:
    """The layout as a JSON-ready dict (as recorded in manifests)."""
    return dataclasses.asdict(self)


def layout() -> ProcessLayout:
  """The current run's layout (a single process unless :func:`initialize` ran)."""
  return ProcessLayout(jax.process_index(), jax.process_count(),
                       jax.local_device_count(), jax.device_count(),
                       jax.default_backend())


def _is_initialized() -> bool:
  # jax.distributed.is_initialized exists in recent JAX; the global state is
  # the fallback older releases offer.
  is_init = getattr(jax.distributed, "is_initialized", None)
  if is_init is not None:
    return bool(is_init())
  from jax._src import distributed as _dist  # pylint: disable=g-import-not-at-top
  return _dist.global_state.client is not None


def _cluster_detected() -> bool:
  """Whether JAX's own cluster detection sees a multi-process job."""
  try:
    from jax._src import clusters  # pylint: disable=g-import-not-at-top
  except ImportError:   # A JAX without the detector: only explicit settings.
    return False
  for env in clusters.ClusterEnv._cluster_types:  # pylint: disable=protected-access
    if getattr(env, "opt_in_only_method", False):
      continue
    try:
      if env.is_env_present():
        return (env.get_process_count() or 1) > 1
    except Exception:  # pylint: disable=broad-except
      # A half-configured environment (e.g. Kubernetes without its client
      # package) is not a reason to fail a single-process run.
      continue
  return False


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None,
               local_device_ids: Sequence[int] | None = None,
               *, mode: str = "auto",
               initialization_timeout: int = 300) -> ProcessLayout:
  """Joins the multi-process job this run belongs to, if any.

  Args:
    coordinator_address: ``host:port`` of process 0's coordinator.
    num_processes: processes in the job.
    process_id: this process's index, ``0 … num_processes-1``.
    local_device_ids: restrict this process to these local devices (one GPU
      per process).
    mode: ``"auto"`` joins a job when any setting is given (arguments or
      ``JAX_*`` variables) or JAX detects a multi-process cluster, and stays a
      single process otherwise; ``"on"`` always calls
      ``jax.distributed.initialize`` (JAX fills in what it can detect);
      ``"off"`` never does.
    initialization_timeout: seconds to wait for every process to connect.

  Returns:
    The :class:`ProcessLayout` after joining.
  """
  if mode not in ("auto", "on", "off"):
    raise DistributedError(f"distributed mode must be auto, on or off; got {mode!r}.")
  if mode == "off" or _is_initialized():
    return layout()
  if num_processes is None and os.environ.get(ENV_NUM_PROCESSES):
    num_processes = int(os.environ[ENV_NUM_PROCESSES])
  if process_id is None and os.environ.get(ENV_PROCESS_ID):
    process_id = int(os.environ[ENV_PROCESS_ID])
  explicit = (coordinator_address or os.environ.get(ENV_COORDINATOR)
              or (num_processes or 1) > 1)
  if mode == "auto" and not explicit and not _cluster_detected():
    return layout()
  if num_processes == 1 and mode == "auto":
    return layout()
  if (num_processes is not None and process_id is not None
      and not 0 <= process_id < num_processes):
    raise DistributedError(
        f"process_id {process_id} is outside 0…{num_processes - 1}; give each "
        f"of the {num_processes} processes a distinct id in that range.")
  if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
    # Without a collectives backend a CPU mesh cannot span processes; the
    # setting only affects the CPU client, so GPU and TPU runs are unchanged.
    jax.config.update("jax_cpu_collectives_implementation", CPU_COLLECTIVES)
  try:
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes,
        process_id=process_id, local_device_ids=local_device_ids,
        initialization_timeout=initialization_timeout)
  except (ValueError, RuntimeError) as e:
    raise DistributedError(
        f"Could not join the multi-process job ({e}). Pass "
        "--coordinator_address=HOST:PORT --num_processes=N --process_id=I (the "
        "same address and count on every process), or set JAX_COORDINATOR_ADDRESS, "
        "JAX_NUM_PROCESSES and JAX_PROCESS_ID.") from e
  return layout()


def owned(n: int, process_index: int | None = None,
          process_count: int | None = None) -> range:
  """The contiguous slice of ``range(n)`` this process owns.

  Slices are disjoint, cover ``range(n)`` and differ in length by at most one;
  they depend only on ``(n, index, count)``.
  """
  p = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  return range(p * n // count, (p + 1) * n // count)


def barrier(name: str, timeout_s: float = DEFAULT_BARRIER_TIMEOUT_S) -> None:
  """Blocks until every process has called ``barrier(name)``.

  Uses the coordination service's barrier (no device collective, so it works
  while devices are busy and survives long waits); a peer that does not
  arrive within ``timeout_s`` raises :class:`DistributedError`. Each name may
  be used once per job.
  """
  if jax.process_count() == 1:
    return
  from jax._src import distributed as _dist  # pylint: disable=g-import-not-at-top
  client = _dist.global_state.client
  if client is None:   # Multi-process without the coordination service (Pathways).
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)
    return
  try:
    client.wait_at_barrier(_BARRIER_PREFIX + name, int(timeout_s * 1000))
  except Exception as e:  # pylint: disable=broad-except
    raise DistributedError(
        f"Process {jax.process_index()} waited {timeout_s:.0f} s at barrier "
        f"{name!r} but not every process arrived ({e}). A process died or is "
        "still busy: rerun every process with the same flags (finished work is "
        "kept) or raise the barrier timeout.") from e


__all__ = ["ProcessLayout", "DistributedError", "initialize", "layout", "owned",
           "barrier", "DEFAULT_BARRIER_TIMEOUT_S"]
