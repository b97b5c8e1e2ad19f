"""The runtime's general cases on a small hand-checkable model: blocks that return several
streams, a forward that changes the layout between blocks, CFG as separate calls per step, and runs
told apart by the pipeline's scheduler. (The real VideoSys families that need these are tested in
their own files; here every expected value can be computed by hand.)"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler
from torch import nn

from magcache_videosys import MagCacheConfig, apply_magcache, get_stats
from magcache_videosys.hooks import get_cache
from magcache_videosys.models import StackBinding

STEPS = 8
RATIOS = [0.9] * (STEPS - 1)
# threshold 0.15, K 2, retention 0.25 (2 steps): skip 2, 4, 6; compute 0 1 3 5 7
SKIPPING = MagCacheConfig(mag_ratios=RATIOS, threshold=0.15, max_skip_steps=2, retention_ratio=0.25)
NEVER = SKIPPING.replace(max_skip_steps=0)
SKIPS = [2, 4, 6]


class TwoStreamBlock(nn.Module):
    """Updates both streams, like CogVideoX's joint blocks; returns (encoder, hidden) when ``swap``."""

    def __init__(self, dim: int, swap: bool) -> None:
        super().__init__()
        self.h, self.e, self.swap = nn.Linear(dim, dim), nn.Linear(dim, dim), swap

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor):
        mixed = hidden_states + encoder_hidden_states.mean(dim=1, keepdim=True)
        h = hidden_states + torch.tanh(self.h(mixed))
        e = encoder_hidden_states + torch.tanh(self.e(encoder_hidden_states))
        return (e, h) if self.swap else (h, e)


class TwoStreamModel(nn.Module):
    def __init__(self, depth: int = 3, dim: int = 8, swap: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(TwoStreamBlock(dim, swap) for _ in range(depth))
        self.swap = swap

    def forward(self, x: torch.Tensor, enc: torch.Tensor, all_timesteps=None) -> torch.Tensor:
        for block in self.blocks:
            out = block(hidden_states=x, encoder_hidden_states=enc)
            enc, x = out if self.swap else out[::-1]
        return x * 0.5


class LayoutBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.proj(x))


class LayoutModel(nn.Module):
    """Latte's pattern: spatial blocks on (b f) t d, temporal on (b t) f d, a positional term added
    before the first temporal block, and the layout switched back after every temporal block."""

    def __init__(self, depth: int = 2, frames: int = 3, tokens: int = 4, dim: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.spatial = nn.ModuleList(LayoutBlock(dim) for _ in range(depth))
        self.temporal = nn.ModuleList(LayoutBlock(dim) for _ in range(depth))
        self.pos = nn.Parameter(torch.randn(1, frames, dim))
        self.frames, self.tokens = frames, tokens

    def forward(self, x: torch.Tensor, all_timesteps=None) -> torch.Tensor:
        b = x.shape[0] // self.frames
        for i, (s, t) in enumerate(zip(self.spatial, self.temporal)):
            x = s(x)
            x = to_temporal(x, self.frames)
            if i == 0:
                x = x + self.pos
            x = t(x)
            if i < len(self.spatial) - 1:
                x = x.reshape(b, self.tokens, self.frames, -1).transpose(1, 2).reshape(b * self.frames, self.tokens, -1)
        return x


def to_temporal(x: torch.Tensor, frames: int) -> torch.Tensor:
    bf, tokens, dim = x.shape
    return x.reshape(bf // frames, frames, tokens, dim).transpose(1, 2).reshape(-1, frames, dim)


def run_info(args, kwargs):
    timesteps = kwargs.get("all_timesteps")
    return None if timesteps is None else (timesteps, len(timesteps))


def sample_two_stream(model: TwoStreamModel, calls_per_step: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x, enc = torch.randn(2, 5, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    timesteps = list(range(STEPS))
    with torch.no_grad():
        for _ in timesteps:
            outs = [model(x + c, enc, all_timesteps=timesteps) for c in range(calls_per_step)]
            x = x - 0.1 * sum(outs)
    return x


def bind_two_stream(model: TwoStreamModel, calls_per_step: int = 1) -> StackBinding:
    if model.swap:
        return StackBinding(
            blocks=list(model.blocks),
            run_info=run_info,
            out_hidden=lambda out: out[1],
            passthrough=lambda a, k: (k["encoder_hidden_states"], k["hidden_states"]),
            pack_tail=lambda a, k, restored: (k["encoder_hidden_states"], restored),
            calls_per_step=calls_per_step,
        )
    return StackBinding(
        blocks=list(model.blocks),
        run_info=run_info,
        out_hidden=lambda out: out[0],
        passthrough=lambda a, k: (k["hidden_states"], k["encoder_hidden_states"]),
        pack_tail=lambda a, k, restored: (restored, k["encoder_hidden_states"]),
        calls_per_step=calls_per_step,
    )


def install(model, binding: StackBinding, config: MagCacheConfig, monkeypatch, pipeline=None):
    from magcache_videosys import magcache

    class Family:
        def bind(self, module):
            return binding

    monkeypatch.setattr(magcache, "find_family", lambda module: Family())
    return apply_magcache(model, config, pipeline)


@pytest.mark.parametrize("swap", [False, True])
def test_tuple_blocks_never_skipping_is_bitwise_plain(swap, monkeypatch):
    model = TwoStreamModel(swap=swap)
    plain = sample_two_stream(model)
    install(model, bind_two_stream(model), NEVER, monkeypatch)
    assert torch.equal(sample_two_stream(model), plain)
    assert get_stats(model).skipped_steps == []


@pytest.mark.parametrize("swap", [False, True])
def test_tuple_blocks_skip_adds_the_hidden_residual_once(swap, monkeypatch):
    model = TwoStreamModel(swap=swap)
    install(model, bind_two_stream(model), SKIPPING, monkeypatch)
    heads = []
    model.blocks[0].register_forward_pre_hook(lambda m, a, k: heads.append(dict(k)), with_kwargs=True)
    tails = []
    model.blocks[-1].register_forward_hook(lambda m, a, k, out: tails.append(out), with_kwargs=True)
    sample_two_stream(model)
    assert get_stats(model).skipped_steps == SKIPS
    hidden = [out[1] if swap else out[0] for out in tails]
    encoder = [out[0] if swap else out[1] for out in tails]
    x = [k["hidden_states"] for k in heads]
    # step 1 computed, step 2 skipped: the step-1 residual added once to the step-2 input
    assert torch.equal(hidden[2], x[2] + (hidden[1] + (-x[1])))
    assert not torch.equal(hidden[2], x[2])
    # the encoder stream passes through a skipped stack unchanged, and is updated on computed steps
    assert torch.equal(encoder[2], heads[2]["encoder_hidden_states"])
    assert not torch.equal(encoder[1], heads[1]["encoder_hidden_states"])


def test_separate_cfg_calls_keep_a_state_and_residual_each(monkeypatch):
    model = TwoStreamModel()
    plain = sample_two_stream(model, calls_per_step=2)
    install(model, bind_two_stream(model, calls_per_step=2), NEVER, monkeypatch)
    assert torch.equal(sample_two_stream(model, calls_per_step=2), plain)
    get_cache(model).detach()
    cache = install(model, bind_two_stream(model, calls_per_step=2), SKIPPING, monkeypatch)
    sample_two_stream(model, calls_per_step=2)
    stats = get_stats(model)
    assert stats.num_steps == STEPS and stats.skipped_steps == SKIPS and stats.branch_disagreements == []
    assert len(cache.branches) == 2 and cache.branches[0].residual is not cache.branches[1].residual
    # the two branches' inputs differ by 1, so their residuals differ
    assert not torch.equal(cache.branches[0].residual, cache.branches[1].residual)


def layout_binding(model: LayoutModel) -> StackBinding:
    blocks = [b for pair in zip(model.spatial, model.temporal) for b in pair]
    return StackBinding(
        blocks=blocks,
        run_info=run_info,
        to_tail=lambda x, args, kwargs: to_temporal(x, args[0].shape[1]),
    )


def sample_layout(model: LayoutModel) -> list[torch.Tensor]:
    x = torch.randn(2 * model.frames, model.tokens, 8, generator=torch.Generator().manual_seed(0))
    timesteps = list(range(STEPS))
    outs = []
    with torch.no_grad():
        for _ in timesteps:
            out = model(x, all_timesteps=timesteps)
            outs.append(out)
            x = x - 0.1 * out.reshape(2, model.tokens, model.frames, 8).transpose(1, 2).reshape(x.shape)
    return outs


def test_layout_change_never_skipping_is_bitwise_plain(monkeypatch):
    model = LayoutModel()
    plain = sample_layout(model)
    install(model, layout_binding(model), NEVER, monkeypatch)
    assert all(torch.equal(a, b) for a, b in zip(sample_layout(model), plain))


def test_layout_change_skip_restores_from_the_first_input_in_the_last_layout(monkeypatch):
    model = LayoutModel()
    install(model, layout_binding(model), SKIPPING, monkeypatch)
    inputs = []
    model.spatial[0].register_forward_pre_hook(lambda m, a: inputs.append(a[0]))
    outs = sample_layout(model)
    assert get_stats(model).skipped_steps == SKIPS
    frames = model.frames
    # the positional term added between blocks is inside the residual: added once, not again
    assert torch.equal(outs[2], to_temporal(inputs[2], frames) + (outs[1] + to_temporal(-inputs[1], frames)))
    assert not torch.allclose(outs[2], outs[1], atol=1e-3)


class Pipe:
    """What the runtime reads of a pipeline: its transformer and its scheduler."""

    def __init__(self, transformer: nn.Module) -> None:
        self.transformer = transformer
        self.scheduler = DDIMScheduler()


def sample_with_scheduler(pipe: Pipe, steps: int, stop_after: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x, enc = torch.randn(2, 5, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    pipe.scheduler.set_timesteps(steps)
    with torch.no_grad():
        for i, t in enumerate(pipe.scheduler.timesteps):
            if i == stop_after:
                raise KeyboardInterrupt
            x = pipe.scheduler.step(pipe.transformer(x, enc), t, x).prev_sample
    return x


def test_runs_are_told_apart_by_the_scheduler_after_an_interruption(monkeypatch):
    model = TwoStreamModel()
    pipe = Pipe(model)
    binding = bind_two_stream(model)
    binding.run_info = lambda args, kwargs: None  # the calls say nothing, like CogVideoX upstream
    install(model, binding, SKIPPING.replace(num_steps=None), monkeypatch, pipeline=pipe)
    reference = sample_with_scheduler(pipe, STEPS)
    assert get_stats(model).skipped_steps == SKIPS
    with pytest.raises(KeyboardInterrupt):
        sample_with_scheduler(pipe, STEPS, stop_after=4)
    assert get_stats(model).steps_seen == 4
    assert torch.equal(sample_with_scheduler(pipe, STEPS), reference)
    assert get_stats(model).skipped_steps == SKIPS and get_stats(model).complete
    sample_with_scheduler(pipe, 5)  # another step count: a new run of 5 steps, the table resampled
    assert get_stats(model).num_steps == 5 and get_stats(model).complete
