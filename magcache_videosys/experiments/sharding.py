"""Data-parallel sharding: which videos this process generates, and which GPUs it may use.

Every process computes the same full job list and takes every ``count``-th job from its
``index``, so no coordination is needed and a rerun with any number of processes skips what is
done. A process of ``torchrun`` or ``srun`` finds its shard in the launcher's environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

T = TypeVar("T")


class ShardError(ValueError):
    """A shard specification that cannot be used."""


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    local_rank: int | None = None  # the process's index on its node, when a launcher gives it
    source: str = "single process"

    def take(self, items: Sequence[T]) -> list[T]:
        """This shard's items: every ``count``-th from ``index`` (sizes differ by at most one)."""
        return list(items[self.index :: self.count])

    def __str__(self) -> str:
        return f"shard {self.index}/{self.count} ({self.source})"


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    parts = text.split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        raise ShardError(
            f"--shard takes i/n (this process's 0-based index / the number of shards), got {text!r}."
        ) from None
    if count < 1 or not 0 <= index < count:
        raise ShardError(
            f"--shard {text}: the index must be in 0..{count - 1} and the count at least 1, "
            f"e.g. --shard 0/{max(count, 1)}."
        )
    return index, count


def _env_int(environ: Mapping[str, str], key: str) -> int | None:
    value = environ.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ShardError(f"environment variable {key}={value!r} is not an integer; check the launcher.") from None


def detect_shard(shard_arg: str | None = None, environ: Mapping[str, str] | None = None) -> Shard:
    """This process's shard: ``--shard``, else torchrun's ``RANK``/``WORLD_SIZE``, else SLURM's
    ``SLURM_PROCID``/``SLURM_NTASKS``, else the whole list."""
    env = os.environ if environ is None else environ
    world = _env_int(env, "WORLD_SIZE")
    if world is not None and world > 1:
        launcher = "torchrun (RANK/WORLD_SIZE)", _env_int(env, "RANK"), world, _env_int(env, "LOCAL_RANK")
    else:
        tasks = _env_int(env, "SLURM_NTASKS")
        launcher = (
            "SLURM (SLURM_PROCID/SLURM_NTASKS)",
            _env_int(env, "SLURM_PROCID"),
            tasks,
            _env_int(env, "SLURM_LOCALID"),
        )
    source, index, count, local_rank = launcher
    if shard_arg is not None:
        if count is not None and count > 1:
            raise ShardError(
                f"--shard {shard_arg} was given but this process was started by {source.split(' ')[0]} "
                f"as one of {count}; the launcher already shards the work. Drop --shard, or start one "
                "process per shard without a launcher."
            )
        index, count = parse_shard(shard_arg)
        return Shard(index, count, None, "--shard")
    if count is None or count <= 1:
        return Shard(0, 1)
    if index is None or not 0 <= index < count:
        raise ShardError(f"{source}: rank {index} is not in 0..{count - 1}; check the launcher's environment.")
    return Shard(index, count, local_rank, source)


def visible_gpus(local_rank: int, gpus_per_process: int, environ: Mapping[str, str] | None = None) -> str:
    """``CUDA_VISIBLE_DEVICES`` for the ``local_rank``-th process of a node using ``gpus_per_process``
    GPUs each.

    VideoSys puts its first rank on ``cuda:0`` (and rank r on ``cuda:r``), so every data-parallel
    process must see only its own GPUs. A launcher that already gave the process exactly its own
    GPUs (e.g. ``srun --gpus-per-task``) is left as it is.
    """
    env = os.environ if environ is None else environ
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None and listed.strip():
        devices = [d.strip() for d in listed.split(",") if d.strip()]
        if len(devices) == gpus_per_process:
            return ",".join(devices)
    else:
        devices = [str(i) for i in range((local_rank + 1) * gpus_per_process)]
    first = local_rank * gpus_per_process
    mine = devices[first : first + gpus_per_process]
    if len(mine) < gpus_per_process:
        raise ShardError(
            f"local rank {local_rank} with --num-gpus {gpus_per_process} needs GPUs "
            f"{first}..{first + gpus_per_process - 1} "
            f"but CUDA_VISIBLE_DEVICES lists {len(devices)}; start (GPUs per node / --num-gpus) processes per node."
        )
    return ",".join(mine)
