"""Spread a batched run's member axis over devices and hosts, and fit it into device memory.

A batched run (`training.batched`) has one leading member axis (seeds x sweep settings) and no
communication between members, so scaling out is pure data parallelism over that axis:

- `batch_mesh(devices)` is a one-axis `jax.sharding.Mesh` named "batch" over every device of
  every process (after `initialize_distributed`), sorted by (process, id) so each process owns
  one contiguous block of members;
- `shard_batch(tree, mesh)` pads the member axis to a multiple of the device count and places it
  with `NamedSharding(mesh, P("batch"))`; every process builds the same host batch
  (`config.make_batch` is deterministic) and contributes only its own rows
  (`jax.make_array_from_process_local_data`);
- `shard_trainer(trainer, mesh)` jits the batched functions with that sharding on inputs and
  outputs. Input sharding alone would propagate through the vmapped trainer, but XLA leaves
  leaves built from constants (step counters, optimiser moments, normaliser statistics)
  replicated, so the outputs are pinned to the batch sharding as well;
- `gather_batch(tree, num_members)` brings results back to host numpy on every process
  (`process_allgather` across hosts) and drops the padding.

Padding repeats real members cyclically (member i of the padded batch is member i mod B), so
padded members run valid keys and hyperparameters (no NaN or error path) and are dropped from
every result. Each padded member costs a real member's compute.

Memory: `estimate_memory(batched_fn, *args)` compiles the call ahead of time and reads XLA's
`memory_analysis()` (argument + output + temporary bytes, minus donated aliases), per device and
per member, falling back to `jax.eval_shape` byte counts of arguments and outputs where the
backend reports nothing. `plan_batch` compares that with the free memory of a device
(`Device.memory_stats()`, or on CPU the available RAM shared by the host's devices) and, when the
batch does not fit, runs it as several sequential sub-batches; members never interact, so the
results equal one batch (bitwise where the per-device member count is the same; see
docs/scaling.md for measured differences otherwise). The compiled program of the estimate is the
one that runs, so estimating costs no extra compile when the batch fits.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import os
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

if TYPE_CHECKING:  # importing the trainer imports gymnax, which starts the backend before initialize_distributed
    from jaxrl_suite.training import BatchedTrainer

BATCH_AXIS = "batch"
# fraction of a device's free memory a planned sub-batch may use: XLA's estimate excludes
# allocator fragmentation and the runtime's own buffers
MEMORY_HEADROOM = 0.8


@dataclasses.dataclass(frozen=True)
class LayoutOptions:
    """Process-wide defaults of `plan_batch` (set by the CLI's --devices, --memory-limit, --members-per-call)."""

    devices: str | int | None = None
    memory_limit_bytes: int | None = None
    members_per_call: int | None = None


_OPTIONS: contextvars.ContextVar[LayoutOptions] = contextvars.ContextVar("jaxrl_suite_layout", default=LayoutOptions())


# ---- processes -------------------------------------------------------------------------------------


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
) -> bool:
    """Join a multi-process run via `jax.distributed.initialize`; returns whether one was joined.

    Explicit arguments win; missing ones are read from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
    and JAX_PROCESS_ID. With none of them and `auto=True`, JAX detects the cluster itself (SLURM,
    Open MPI, Cloud TPU pods, Kubernetes). With none of them and `auto=False` it does nothing (a
    single-process run). Must run before anything touches a device.
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = _env_int("JAX_NUM_PROCESSES", num_processes)
    process_id = _env_int("JAX_PROCESS_ID", process_id)
    explicit = (coordinator_address, num_processes, process_id)
    if all(v is None for v in explicit) and not auto:
        return False
    if jax.distributed.is_initialized():
        return True
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            raise ValueError(
                f"coordinator_address={coordinator_address!r}, num_processes={num_processes!r}, process_id={process_id!r}: "
                "give all three (flags --coordinator-address --num-processes --process-id, or JAX_COORDINATOR_ADDRESS, "
                "JAX_NUM_PROCESSES, JAX_PROCESS_ID), or none of them with --distributed to let JAX detect the cluster"
            )
        host, sep, port = coordinator_address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"coordinator_address={coordinator_address!r} must look like host:port, e.g. 10.0.0.1:1234")
        if num_processes < 1:
            raise ValueError(f"num_processes={num_processes} must be a positive integer")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"process_id={process_id} must be in [0, num_processes={num_processes})")
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    else:
        jax.distributed.initialize()
    return True


def _env_int(name: str, value: int | None) -> int | None:
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name.lower().removeprefix('jax_')}={value!r} must be an integer")
        return int(value)
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer") from None


def is_main_process() -> bool:
    """True on the process that writes files (process 0; the only one without distribution)."""
    return jax.process_index() == 0


# ---- devices and meshes ----------------------------------------------------------------------------


@contextlib.contextmanager
def layout_options(devices: str | int | None = None, memory_limit_bytes: int | None = None, members_per_call: int | None = None) -> Iterator[None]:
    """Inside the block, `plan_batch` (so every `runs.run`) uses these wherever its caller passes None."""
    token = _OPTIONS.set(LayoutOptions(devices, memory_limit_bytes, members_per_call))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


def parse_bytes(text: str) -> int:
    """'8GiB', '512MiB', '2e9' or '1000000' as a number of bytes."""
    units = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "b": 1}
    raw = str(text).strip().lower()
    unit = next((u for u in units if raw.endswith(u)), None)
    number = raw[: -len(unit)] if unit else raw
    try:
        value = float(number) * (units[unit] if unit else 1)
    except ValueError:
        value = -1.0
    if not value >= 1:
        raise ValueError(f"memory limit {text!r} must be a positive size such as 8GiB, 512MiB or 2e9 (bytes); units: {sorted(units)}")
    return int(value)


def select_devices(spec: str | int | None = None) -> list[jax.Device]:
    """The devices a run uses: "all" (every device of every process) or N local devices per process.

    None means the `layout_options` default, else "all". Every process keeps the same number, so
    each one contributes its block of members.
    """
    spec = _OPTIONS.get().devices if spec is None else spec
    spec = "all" if spec is None else spec
    if isinstance(spec, str) and spec.strip().lower() == "all":
        return list(jax.devices())
    try:
        count = int(spec)
        valid = not isinstance(spec, bool) and str(spec).strip() == str(count)
    except (TypeError, ValueError):
        valid = False
    if not valid or count < 1:
        raise ValueError(f"devices={spec!r} must be 'all' or a positive number of devices per process")
    local = jax.local_device_count()
    if count > local:
        raise ValueError(f"devices={count} but this process has {local} local devices ({jax.default_backend()}); valid: 'all' or 1..{local}")
    chosen = []
    for p in range(jax.process_count()):
        chosen.extend(sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)[:count])
    return chosen


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named "batch" over `devices` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("batch_mesh needs at least one device")
    # members never communicate, so the device order only decides which process owns which
    # members: sorting by process makes each process's block contiguous
    ordered = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(ordered), (BATCH_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (member) axis split over the mesh's "batch" axis, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def padded_size(num_members: int, num_shards: int) -> int:
    """The smallest multiple of `num_shards` that holds `num_members` (at least one per shard)."""
    if num_members < 1 or num_shards < 1:
        raise ValueError(f"num_members={num_members} and num_shards={num_shards} must be positive")
    return math.ceil(num_members / num_shards) * num_shards


def pad_batch(tree: Any, size: int) -> Any:
    """Host copy of `tree` whose leading axis is `size` long, real members repeated cyclically."""

    def pad(x):
        x = np.asarray(x)
        if x.shape[0] == size:
            return x
        return np.take(x, np.arange(size) % x.shape[0], axis=0)

    return jax.tree.map(pad, tree)


def _leading_size(tree: Any) -> int:
    sizes = {np.shape(x)[0] for x in jax.tree.leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"every leaf needs the same leading (member) size, got {sorted(sizes)}")
    return sizes.pop()


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Pad the member axis to a multiple of the mesh size and place it as global arrays sharded on "batch".

    Every process passes the same full host batch and uploads only the rows its own devices hold.
    """
    sharding = batch_sharding(mesh)
    size = padded_size(_leading_size(tree), mesh.size)
    host = pad_batch(tree, size)

    def place(x):
        rows = sorted({idx[0].indices(size)[:2] for idx in sharding.addressable_devices_indices_map(x.shape).values()})
        start, stop = rows[0][0], rows[-1][1]
        return jax.make_array_from_process_local_data(sharding, x[start:stop], x.shape)

    return jax.tree.map(place, host)


def gather_batch(tree: Any, num_members: int | None = None) -> Any:
    """Host numpy copy of batched results on every process, padding (rows past `num_members`) dropped."""
    if jax.process_count() > 1:
        host = multihost_utils.process_allgather(tree, tiled=True)
    else:
        host = jax.device_get(tree)
    return jax.tree.map(lambda x: np.asarray(x)[:num_members], host)


def shard_trainer(trainer: BatchedTrainer, mesh: Mesh) -> BatchedTrainer:
    """The batched functions with member-axis sharding pinned on every input and output."""
    sharding = batch_sharding(mesh)

    def pin(fn: Callable) -> Callable:
        return jax.jit(fn, in_shardings=sharding, out_shardings=sharding)

    return dataclasses.replace(trainer, init=pin(trainer.init), update=pin(trainer.update), evaluate=pin(trainer.evaluate), train=pin(trainer.train))


# ---- memory ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one call: bytes one device needs, for how many members, and how it was measured."""

    bytes_per_device: int
    members_per_device: int
    method: str  # "memory_analysis" (XLA's compiled figures) or "eval_shape" (arguments + outputs only)
    compiled: Any = None  # the compiled call behind a "memory_analysis" estimate, ready to run

    @property
    def bytes_per_member(self) -> float:
        """Device bytes per member (fixed costs shared out, so a smaller sub-batch needs a re-check)."""
        return self.bytes_per_device / self.members_per_device


def _tree_bytes(tree: Any) -> int:
    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _num_shards(tree: Any) -> int:
    for x in jax.tree.leaves(tree):
        sharding = getattr(x, "sharding", None)
        if sharding is not None:
            return max(1, x.shape[0] // sharding.shard_shape(x.shape)[0]) if x.shape[0] else 1
    return 1


def estimate_memory(batched_fn: Callable, *args: Any) -> MemoryEstimate:
    """Peak device memory of `batched_fn(*args)` per device and per member (args may be ShapeDtypeStructs).

    Compiles ahead of time and reads `memory_analysis()`: argument + output + temporary bytes
    minus donated aliases (XLA reports one device's share of a sharded program). Where the
    backend reports nothing, falls back to `jax.eval_shape` bytes of arguments and outputs, a
    lower bound that misses temporaries.
    """
    fn = batched_fn if hasattr(batched_fn, "lower") else jax.jit(batched_fn)
    members = _leading_size(args)
    shards = _num_shards(args)
    compiled = fn.lower(*args).compile()
    try:
        stats = compiled.memory_analysis()
    except NotImplementedError:  # backends without XLA's memory figures
        stats = None
    if stats is not None:
        used = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes
        used += stats.generated_code_size_in_bytes
        return MemoryEstimate(int(used), max(1, members // shards), "memory_analysis", compiled)
    outputs = jax.eval_shape(fn, *args)
    used = (_tree_bytes(args) + _tree_bytes(outputs)) // shards
    return MemoryEstimate(int(used), max(1, members // shards), "eval_shape", compiled)


def available_memory(device: jax.Device | None = None) -> int:
    """Free bytes on one device: its allocator's limit minus use, or on CPU the available RAM over its local devices."""
    device = device or jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        import psutil

        free = psutil.virtual_memory().available
    except ImportError:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    # forced host devices (--xla_force_host_platform_device_count) share one machine's RAM
    sharing = sum(1 for d in jax.local_devices() if d.platform == device.platform)
    return int(free // max(1, sharing))


# ---- planned runs ----------------------------------------------------------------------------------


def _rows(tree: Any, start: int, stop: int) -> Any:
    return jax.tree.map(lambda x: np.asarray(x)[start:stop], tree)


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How a run's members execute: on which mesh, in sub-batches of how many, with which functions.

    With one sub-batch the state stays on the devices between chunks; with several, each
    sub-batch is uploaded, advanced one chunk and brought back to host memory in turn, so only
    one sub-batch occupies the devices.
    """

    trainer: BatchedTrainer  # sharded over `mesh` when it has more than one device
    mesh: Mesh | None  # None: one device, no sharding annotations (the plain batched program)
    num_members: int
    members_per_call: int  # a multiple of the device count; the last sub-batch is padded
    estimate: MemoryEstimate | None
    update_fn: Callable  # the compiled update of the estimate when it matches, else trainer.update

    @property
    def num_devices(self) -> int:
        """Devices the member axis is split over (all processes)."""
        return 1 if self.mesh is None else self.mesh.size

    @property
    def sub_batches(self) -> list[tuple[int, int]]:
        """[start, stop) member ranges run one after another."""
        step = self.members_per_call
        return [(i, min(i + step, self.num_members)) for i in range(0, self.num_members, step)]

    def _put(self, tree: Any) -> Any:
        if self.mesh is None:
            return jax.device_put(pad_batch(tree, self.members_per_call))
        return shard_batch(pad_batch(tree, self.members_per_call), self.mesh)

    def init(self, keys: Any, hyper: Any) -> Any:
        """Fresh state: device-resident (one sub-batch) or a host numpy tree of every member (several)."""
        if len(self.sub_batches) == 1:
            return self.trainer.init(*self._put((keys, hyper)))
        parts = [gather_batch(self.trainer.init(*self._put(_rows((keys, hyper), a, b))), b - a) for a, b in self.sub_batches]
        return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)

    def load(self, host_state: Any) -> Any:
        """The state laid out for this plan from a host copy of every member (e.g. a restored checkpoint)."""
        host_state = _rows(host_state, 0, self.num_members)
        return self._put(host_state) if len(self.sub_batches) == 1 else host_state

    def update(self, state: Any) -> tuple[Any, dict[str, np.ndarray]]:
        """One chunk for every member; metrics come back as host arrays (num_members, K)."""
        if len(self.sub_batches) == 1:
            state, metrics = self.update_fn(state)
            return state, gather_batch(metrics, self.num_members)
        states, metrics = [], []
        for a, b in self.sub_batches:
            sub_state, sub_metrics = self.update_fn(self._put(_rows(state, a, b)))
            states.append(gather_batch(sub_state, b - a))
            metrics.append(gather_batch(sub_metrics, b - a))
        return jax.tree.map(lambda *xs: np.concatenate(xs), *states), jax.tree.map(lambda *xs: np.concatenate(xs), *metrics)

    def host_state(self, state: Any) -> Any:
        """Host numpy copy of every member's state (padding dropped)."""
        return gather_batch(state, self.num_members)

    def describe(self) -> dict[str, Any]:
        """JSON-ready layout: devices, processes, sub-batches, memory estimate."""
        est = self.estimate
        return {
            "devices": self.num_devices,
            "processes": jax.process_count(),
            "platform": jax.default_backend(),
            "members": self.num_members,
            "members_per_call": self.members_per_call,
            "sub_batches": len(self.sub_batches),
            "padded_members": len(self.sub_batches) * self.members_per_call - self.num_members,
            "memory_method": None if est is None else est.method,
            "memory_bytes_per_member": None if est is None else est.bytes_per_member,
        }


def plan_batch(
    trainer: BatchedTrainer,
    keys: Any,
    hyper: Any,
    devices: str | int | Sequence[jax.Device] | None = None,
    memory_limit_bytes: int | None = None,
    members_per_call: int | None = None,
    estimate: bool = True,
) -> BatchPlan:
    """Choose the mesh and the sub-batch size for a batch of members so each call fits in device memory.

    `devices`: "all", N local devices per process, or explicit devices (default: `select_devices()`).
    `memory_limit_bytes`: bytes one device may use (default: `available_memory() * MEMORY_HEADROOM`).
    `members_per_call`: an upper bound on the sub-batch size (rounded up to a multiple of the
    device count), e.g. to keep programs small on a CPU. With `estimate=False` no memory check runs.
    Arguments left None take the `layout_options` in force.
    """
    options = _OPTIONS.get()
    memory_limit_bytes = options.memory_limit_bytes if memory_limit_bytes is None else memory_limit_bytes
    members_per_call = options.members_per_call if members_per_call is None else members_per_call
    chosen = list(devices) if isinstance(devices, (list, tuple)) else select_devices(devices)
    # the default device alone runs the plain batched program, without sharding annotations
    mesh = None if chosen == [jax.devices()[0]] else batch_mesh(chosen)
    sharded = shard_trainer(trainer, mesh) if mesh is not None else trainer
    sharding = batch_sharding(mesh) if mesh is not None else None
    shards = 1 if mesh is None else mesh.size
    num_members = _leading_size((keys, hyper))
    if memory_limit_bytes is not None and (isinstance(memory_limit_bytes, bool) or not isinstance(memory_limit_bytes, (int, np.integer)) or memory_limit_bytes <= 0):
        raise ValueError(f"memory_limit_bytes={memory_limit_bytes!r} must be a positive integer number of bytes")
    if members_per_call is not None and (isinstance(members_per_call, bool) or not isinstance(members_per_call, (int, np.integer)) or members_per_call < 1):
        raise ValueError(f"members_per_call={members_per_call!r} must be a positive integer")
    per_device = math.ceil(min(num_members, members_per_call or num_members) / shards)
    if not estimate:
        return BatchPlan(sharded, mesh, num_members, per_device * shards, None, sharded.update)

    one_member = jax.eval_shape(trainer.init, *pad_batch((keys, hyper), 1))
    local = next(d for d in chosen if d.process_index == jax.process_index())
    limit = memory_limit_bytes if memory_limit_bytes is not None else int(available_memory(local) * MEMORY_HEADROOM)
    if jax.process_count() > 1:  # every process must choose the same sub-batches: plan for the tightest host
        # float32 (the 32-bit default would wrap an int64 byte count); 24 mantissa bits are plenty here
        limit = int(np.min(multihost_utils.process_allgather(np.asarray(limit, np.float32))))
    while True:
        size = per_device * shards
        state = jax.tree.map(lambda x: jax.ShapeDtypeStruct((size,) + x.shape[1:], x.dtype, sharding=sharding), one_member)
        result = estimate_memory(sharded.update, state)
        if result.bytes_per_device <= limit or per_device == 1:
            break
        # shrink by the estimated ratio, then re-check: fixed costs make the ratio optimistic
        per_device = max(1, min(per_device - 1, int(per_device * limit / result.bytes_per_device)))
    if result.bytes_per_device > limit:
        warnings.warn(
            f"one member per device needs about {result.bytes_per_device / 2**20:.1f} MiB but the limit is "
            f"{limit / 2**20:.1f} MiB per device; running anyway, it may run out of memory",
            stacklevel=2,
        )
    update_fn = result.compiled if result.compiled is not None else sharded.update
    return BatchPlan(sharded, mesh, num_members, per_device * shards, result, update_fn)
