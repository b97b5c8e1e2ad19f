"""What a caching method needs to know about a model family, and nothing about the method."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

# (run key, number of steps): the key is an object that stays the same for every call of one
# sampling run and changes with the next run; None when the call does not reveal its run.
RunInfo = tuple[Any, int]


@dataclass
class StackBinding:
    """One model instance's block stack, ready to hook.

    ``blocks`` are in execution order. The residual is taken on the hidden stream, from the first
    block's input to the last block's output. By default a block takes the hidden stream as its
    first argument (or the ``hidden_name`` keyword) and returns it, and nothing runs between
    blocks; the optional fields describe families that differ.
    """

    blocks: Sequence[nn.Module]
    run_info: Callable[[tuple, dict], RunInfo | None]
    hidden_name: str = "hidden_states"
    #: The hidden stream of a block's output, for blocks that return several streams
    #: (CogVideoX: ``(hidden, encoder)``, Vchitect: ``(encoder, hidden)``).
    out_hidden: Callable[[Any], torch.Tensor] | None = None
    #: What a block returns on a skipped step, from its call arguments (its inputs, in the order
    #: it returns its outputs); None: the hidden input.
    passthrough: Callable[[tuple, dict], Any] | None = None
    #: What the last block returns on a skipped step, from its call arguments and the restored
    #: hidden stream; None: the restored hidden stream.
    pack_tail: Callable[[tuple, dict, torch.Tensor], Any] | None = None
    #: Brings the first block's input into the last block's output layout, given the last block's
    #: call arguments, where the forward changes the layout between blocks (Latte: ``(b f) t d``
    #: to ``(b t) f d``). The residual then lives in the last block's layout, and everything the
    #: forward does between blocks lies inside it. Must be a pure permutation of elements.
    to_tail: Callable[[torch.Tensor, tuple, dict], torch.Tensor] | None = None
    #: Transformer calls per sampling step (2 where CFG runs the conditional and unconditional
    #: batches as separate calls): each call position (branch) keeps its own state and residual.
    calls_per_step: int = 1
    #: The first block's timestep-modulated input, from that block's call arguments (TeaCache's
    #: signal); None where the family does not know how the block modulates its input.
    modulated_input: Callable[[tuple, dict], torch.Tensor] | None = None
    #: Sums a small tensor in place over the ranks that split one model call between them
    #: (sequence or CFG parallelism), so data-dependent decisions agree on every rank.
    all_reduce: Callable[[torch.Tensor], None] | None = None

    def hidden(self, args: tuple, kwargs: dict) -> torch.Tensor:
        """The hidden stream a block was called with."""
        return args[0] if args else kwargs[self.hidden_name]

    def output_hidden(self, out: Any) -> torch.Tensor:
        """The hidden stream of a block's output."""
        return out if self.out_hidden is None else self.out_hidden(out)

    def skipped_output(self, args: tuple, kwargs: dict) -> Any:
        """What a block (not the last) returns on a skipped step."""
        return self.hidden(args, kwargs) if self.passthrough is None else self.passthrough(args, kwargs)

    def tail_output(self, args: tuple, kwargs: dict, restored: torch.Tensor) -> Any:
        """What the last block returns on a skipped step."""
        return restored if self.pack_tail is None else self.pack_tail(args, kwargs, restored)


@dataclass(frozen=True)
class GenerationOption:
    """One family-specific generation setting on the command line (steps, CFG scale, dtype and
    seed are common to all families): its ``--flag``, how it is read, and its defaults."""

    name: str  # the key in the run's settings
    flag: str
    default: Any  # VideoSys's default for a real run
    tiny_default: Any  # the default of a ``--tiny`` CPU run
    help: str
    parse: Callable[[str], Any] = str  # raises argparse.ArgumentTypeError with a message for the user


@dataclass(frozen=True)
class Generation:
    """How a family generates with VideoSys: its sampling defaults, its own options (sizes) and
    the weights it loads, each weight an option whose default is the published checkpoint."""

    steps: int
    cfg_scale: float
    options: tuple[GenerationOption, ...]
    weights: tuple[GenerationOption, ...]
    fps: int  # what VideoSys's save_video writes for this family
    dtype: str = "bf16"


@dataclass(frozen=True)
class TestBed:
    """A small model of the family trained for a task (``--testbed``): real videos on the CPU, in
    fp32, at the one clip size it learned, with a prompt file of that task in the VBench format."""

    __test__ = False  # not a pytest class

    label: str  # the model, for messages and the dry run
    options: dict[str, Any]  # every size option at the value it was trained at (the only one it knows)
    weights: dict[str, str]  # what each weight option holds, as the records name it
    prompts: Path  # its VBench-format prompt file, the default of ``--testbed`` runs
    note: str  # what the family's published presets mean on it, and its own table and coefficients


class ModelFamily:
    """Everything the package knows about one model family: one subclass per file in this folder.

    The runtime, the methods and the tools read a family only through this interface, so adding a
    model is one new file (and one line in the registry, ``models/__init__.py``).
    """

    #: Short name, as in ``--model NAME``.
    name: str = ""
    #: Human-readable name used in error messages and the README table.
    description: str = ""
    #: Class names of the transformers this family hooks.
    model_classes: tuple[str, ...] = ()
    #: Class names of the VideoSys pipelines whose ``transformer`` this family hooks.
    pipeline_classes: tuple[str, ...] = ()
    #: The VideoSys config class of this family, by name (None: not a VideoSys model).
    config_class: str | None = None
    #: The VideoSys PAB config class of this family, by name (None: no PAB).
    pab_config_class: str | None = None
    #: Published TeaCache rescaling polynomials (highest power first), by the name configs use.
    teacache_coefficients: dict[str, tuple[float, ...]] = {}
    #: MagCache presets of this family: name -> ``MagCacheConfig`` fields.
    magcache_presets: dict[str, dict[str, Any]] = {}
    #: TeaCache presets of this family: name -> ``TeaCacheConfig`` fields (the TeaCache repository's
    #: thresholds with the family's published coefficients).
    teacache_presets: dict[str, dict[str, Any]] = {}
    #: What VideoSys's default PAB config of this family broadcasts, by PAB config class name.
    pab_defaults: dict[str, str] = {}
    #: PAB ranges (``<kind>_range`` arguments of the PAB config) of ``--method pab-fast``; None where
    #: no faster setting is published for the family.
    pab_fast_ranges: dict[str, int] | None = None

    def matches(self, module: nn.Module) -> bool:
        return type(module).__name__ in self.model_classes

    def bind(self, module: nn.Module) -> StackBinding:
        """The block stack of ``module``, ready for the runtime."""
        raise NotImplementedError

    def prepare_pab(self, pipeline: Any) -> None:
        """Whatever VideoSys's own PAB needs on a built pipeline of this family to run (nothing by default)."""

    #: How this family generates (``experiments/``, ``calibrate``); None: the package cannot
    #: generate with it (a model hooked in the user's own code).
    generation: Generation | None = None
    #: Its trained CPU test bed (``--testbed``); None: it has none.
    testbed: TestBed | None = None

    def model_label(self, settings: Mapping[str, Any]) -> str:
        """The model a run with these settings generates with, e.g. ``CogVideoX-5b`` (messages, help)."""
        return self.description

    def fill_options(self, given: Mapping[str, Any], tiny: bool) -> dict[str, Any]:
        """Every generation option and weight of a run: the ``given`` ones (None: not given), the
        rest VideoSys's defaults (``tiny_default`` with ``tiny``); families whose defaults depend on
        another option (a version's weights) override this."""
        gen = self.generation
        options = {}
        for option in (*gen.options, *gen.weights):
            value = given.get(option.name)
            options[option.name] = (option.tiny_default if tiny else option.default) if value is None else value
        return options

    def default_dtype(self, options: Mapping[str, Any]) -> str:
        """The dtype VideoSys runs a model with these options in, when ``--dtype`` is not given."""
        return self.generation.dtype

    def loop_steps(self, settings: Mapping[str, Any]) -> int:
        """Transformer-loop iterations of one video, the steps a schedule, a ratio table and the
        statistics count (the sampling steps, except for samplers that add warm-up iterations)."""
        return int(settings["num_steps"])

    def magcache_preset(self, speed: str, settings: Mapping[str, Any]) -> str | None:
        """The MagCache preset ``--method magcache-<speed>`` means for this run (None: none published)."""
        name = f"{self.name}-{speed}"
        return name if name in self.magcache_presets else None

    def teacache_preset(self, speed: str, settings: Mapping[str, Any]) -> str | None:
        """The TeaCache preset ``--method teacache-<speed>`` means for this run (None: no published
        coefficients for its model)."""
        name = f"teacache-{self.name}-{speed}"
        return name if name in self.teacache_presets else None

    def pab_config_name(self, settings: Mapping[str, Any]) -> str | None:
        """The VideoSys PAB config class of this run's model (None: no PAB)."""
        return self.pab_config_class

    def check_generation(self, settings: dict[str, Any]) -> None:
        """Raise ValueError, naming the option and the fix, for settings VideoSys cannot generate
        (called before anything is created; may import VideoSys)."""

    def videosys_config(self, settings: dict[str, Any], num_gpus: int) -> Any:
        """The VideoSys config of a run with these settings (``tiny`` ones build no weights)."""
        raise NotImplementedError(f"{self.description} cannot generate")

    def generate(self, target: Any, prompt: str, seed: int, settings: dict[str, Any]) -> Any:
        """Generate one video with a VideoSys engine or pipeline; returns frames (T, H, W, 3) uint8."""
        raise NotImplementedError(f"{self.description} cannot generate")

    def testbed_pipeline(self, config: Any) -> Any:
        """This family's VideoSys pipeline on the CPU in float32 with the trained test bed (``--testbed``);
        a caching method enabled on ``config`` is installed as on every rank."""
        raise NotImplementedError(f"{self.description} has no test bed")

    def tiny_pipeline(self, config: Any = None, seed: int = 0, **config_kwargs: Any) -> Any:
        """This family's VideoSys pipeline on the CPU in float32 with tiny random-weight components,
        built offline (tests and ``--tiny`` runs); ``config`` is built from ``config_kwargs`` when
        not given, and a caching method enabled on it is installed as on every rank."""
        raise NotImplementedError(f"{self.description} has no tiny pipeline")

    def default_pab_config(self, config: Any) -> Any:
        """A fresh instance of this family's VideoSys PAB config for ``config`` (VideoSys's default
        argument is one instance shared by every config, which keeps PAB's stored MLP outputs)."""
        if self.pab_config_class is None:
            raise ValueError(f"{self.description} has no VideoSys PAB config; PAB is VideoSys's own.")
        from ..videosys_compat import import_videosys

        return getattr(import_videosys(), self.pab_config_class)()


# --- helpers several families share ------------------------------------------------------------
def position(module: nn.Module, name: str) -> int | None:
    """Index of parameter ``name`` among the positional arguments of ``module``'s class forward
    (``self`` not counted; read from the class, so wrappers on the instance do not hide it)."""
    params = list(inspect.signature(type(module).forward).parameters)[1:]
    return params.index(name) if name in params else None


def call_arg(args: tuple, kwargs: dict, index: int | None, name: str) -> Any:
    """A call argument given positionally at ``index`` or by keyword ``name`` (None if neither)."""
    if index is not None and len(args) > index:
        return args[index]
    return kwargs.get(name)


def ada_norm_single_input(block: nn.Module, x_name: str, t_name: str) -> Callable[[tuple, dict], torch.Tensor]:
    """TeaCache's signal for the PixArt-style blocks (``ada_norm_single``: Open-Sora's STDiT3,
    Open-Sora-Plan, Latte): the block's attention input before attention, ``norm1(x)`` modulated
    with the shift and scale that its ``scale_shift_table`` and the timestep argument give."""
    x_index, t_index = position(block, x_name), position(block, t_name)

    def modulated_input(args: tuple, kwargs: dict) -> torch.Tensor:
        x = call_arg(args, kwargs, x_index, x_name)
        t = call_arg(args, kwargs, t_index, t_name)
        shift, scale = (block.scale_shift_table[None] + t.reshape(x.shape[0], 6, -1)).chunk(6, dim=1)[:2]
        return block.norm1(x) * (1 + scale) + shift

    return modulated_input


def parallel_all_reduce(module: nn.Module, groups: Sequence[str] = ("sp_group", "cp_group")) -> Callable:
    """Sums a small tensor in place over the VideoSys parallel groups of ``module`` that split one
    model call (sequence parallelism shards the tokens, CFG parallelism the [cond, uncond] batch),
    so data-dependent decisions agree on every rank; on one device there is no group and nothing to do."""

    def all_reduce(values: torch.Tensor) -> None:
        manager = getattr(module, "parallel_manager", None)
        for name in groups:
            group = getattr(manager, name, None)
            if group is not None:
                torch.distributed.all_reduce(values, group=group)

    return all_reduce


def driver_pipeline(target: Any) -> Any:
    """The pipeline of this process: an engine's driver worker, or the pipeline itself."""
    return getattr(target, "driver_worker", target)


def quiet_generate_kwargs(target: Any) -> dict[str, Any]:
    """What keeps a pipeline's ``generate`` from drawing a progress bar: ``verbose=False`` where it
    takes it (the engine passes it on to every rank), else the diffusers progress bar of this
    process's pipeline is turned off (other ranks keep theirs)."""
    pipeline = driver_pipeline(target)
    if "verbose" in inspect.signature(pipeline.generate).parameters:
        return {"verbose": False}
    if hasattr(pipeline, "set_progress_bar_config"):
        pipeline.set_progress_bar_config(disable=True)
    return {}


def video_frames(video: Any) -> Any:
    """A generated video as frames (T, H, W, 3) uint8: VideoSys returns a uint8 tensor or a list of
    PIL images (which its ``save_video`` hands to imageio as they are)."""
    import numpy as np

    if isinstance(video, (list, tuple)):
        return np.stack([np.asarray(frame.convert("RGB") if hasattr(frame, "convert") else frame) for frame in video])
    return video


def size_check(flag: str, value: int, multiple: int, why: str) -> None:
    """A frame side VideoSys cannot make: one line naming the option, the rule and a valid value."""
    if value % multiple:
        fix = max(multiple, round(value / multiple) * multiple)
        raise ValueError(f"{flag} {value} is not a multiple of {multiple} ({why}); try {flag} {fix}.")
