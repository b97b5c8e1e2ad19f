"""Data-parallel sharding: every video exactly once, shards from launchers' environments, GPU slices."""

from __future__ import annotations

from collections import Counter

import pytest

from magcache_videosys.experiments.runner import make_jobs
from magcache_videosys.experiments.sharding import Shard, ShardError, detect_shard, parse_shard, visible_gpus

PROMPTS = tuple(f"prompt {i}" for i in range(23))


@pytest.mark.parametrize("count", [1, 2, 3, 7, 8, 32, 200])
@pytest.mark.parametrize("num_samples", [1, 5])
def test_every_video_exactly_once_across_shards(count, num_samples):
    jobs = make_jobs(PROMPTS, PROMPTS, num_samples, seed=0)
    taken = [job for i in range(count) for job in Shard(i, count).take(jobs)]
    assert Counter(j.video for j in taken) == Counter(j.video for j in jobs)
    assert len(taken) == len(jobs) == len(PROMPTS) * num_samples
    assert {j.prompt for j in taken} == set(PROMPTS)
    sizes = [len(Shard(i, count).take(jobs)) for i in range(count)]
    assert max(sizes) - min(sizes) <= 1


def test_jobs_carry_seed_from_sample_index():
    jobs = make_jobs(("a cat",), ("a cat",), 3, seed=10)
    assert [(j.video, j.index, j.seed) for j in jobs] == [
        ("a cat-0.mp4", 0, 10),
        ("a cat-1.mp4", 1, 11),
        ("a cat-2.mp4", 2, 12),
    ]


def test_parse_shard():
    assert parse_shard("3/8") == (3, 8)
    for bad in ["8/8", "-1/4", "1/0", "1", "a/b", "1/2/3"]:
        with pytest.raises(ShardError, match="--shard"):
            parse_shard(bad)


def test_detect_from_torchrun_slurm_and_flag():
    assert detect_shard(None, {}) == Shard(0, 1)
    torchrun = {"RANK": "9", "WORLD_SIZE": "32", "LOCAL_RANK": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "4"}
    assert detect_shard(None, torchrun) == Shard(9, 32, 1, "torchrun (RANK/WORLD_SIZE)")
    slurm = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "3"}
    assert detect_shard(None, slurm) == Shard(3, 4, 3, "SLURM (SLURM_PROCID/SLURM_NTASKS)")
    assert detect_shard(None, {"WORLD_SIZE": "1", "RANK": "0"}) == Shard(0, 1)
    assert detect_shard("1/3", {}) == Shard(1, 3, None, "--shard")
    assert detect_shard("1/3", {"WORLD_SIZE": "1"}) == Shard(1, 3, None, "--shard")


def test_flag_under_a_launcher_and_bad_environments_are_errors():
    with pytest.raises(ShardError, match="already shards"):
        detect_shard("0/2", {"RANK": "0", "WORLD_SIZE": "8"})
    with pytest.raises(ShardError, match="not in 0..3"):
        detect_shard(None, {"SLURM_PROCID": "4", "SLURM_NTASKS": "4"})
    with pytest.raises(ShardError, match="not an integer"):
        detect_shard(None, {"WORLD_SIZE": "x"})


def test_visible_gpus_slices_the_node():
    assert visible_gpus(0, 1, {}) == "0"
    assert visible_gpus(3, 2, {}) == "6,7"
    assert visible_gpus(1, 2, {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}) == "6,7"
    assert visible_gpus(5, 1, {"CUDA_VISIBLE_DEVICES": "2"}) == "2"  # the launcher already chose this process's GPU
    with pytest.raises(ShardError, match="processes per node"):
        visible_gpus(2, 2, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
