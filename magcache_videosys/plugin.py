"""Turning a caching method on and off for whatever the user holds: a VideoSys config, engine,
pipeline, or the transformer itself.

A config is the only thing that reaches the worker processes ``VideoSysEngine`` spawns for
``num_gpus > 1`` (each rank calls ``config.pipeline_cls(config)``), so enabling on a config stores
the method's settings on it and swaps ``pipeline_cls`` for :class:`CachedPipeline`, a picklable
builder that installs the method on every rank's freshly built pipeline. VideoSys's own PAB,
the other baseline, is turned on the same way (:func:`enable_pab`), never together with a cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .hooks import BlockStackCache, get_cache
from .magcache import MagCacheConfig, apply_magcache
from .models import ModelFamily, UnsupportedModelError, family_of_pipeline, find_family, supported_models
from .stats import RunStats
from .teacache import TeaCacheConfig, apply_teacache


@dataclass(frozen=True)
class Method:
    """A caching method as the plugin sees it: its config type and how to install it."""

    name: str  # config attributes are enable_<name> and <name>_config
    config_type: type
    apply: Callable[[nn.Module, Any, Any], BlockStackCache]  # (transformer, config, its pipeline or None)
    label: str  # the policy's method name, as in errors and statistics


METHODS: dict[str, Method] = {
    "magcache": Method("magcache", MagCacheConfig, apply_magcache, "MagCache"),
    "teacache": Method("teacache", TeaCacheConfig, apply_teacache, "TeaCache"),
}


class CachedPipeline:
    """Stands in for ``config.pipeline_cls``: builds the VideoSys pipeline, then installs the
    caching method the config carries (or, with PAB on, the fix :func:`enable_pab` describes).
    Picklable (it holds only the pipeline class), so it travels with the config into every
    spawned rank."""

    def __init__(self, pipeline_cls: type) -> None:
        self.pipeline_cls = pipeline_cls

    def __call__(self, config: Any, *args: Any, **kwargs: Any) -> Any:
        return self.install(config, self.pipeline_cls(config, *args, **kwargs))

    def install(self, config: Any, pipeline: Any) -> Any:
        """What every rank does to its freshly built pipeline (also for one built another way)."""
        if getattr(config, "enable_pab", False):
            family_of_pipeline(self.pipeline_cls).prepare_pab(pipeline)
        for method in METHODS.values():
            if getattr(config, f"enable_{method.name}", False):
                _install(pipeline, method, getattr(config, f"{method.name}_config"))
        return pipeline

    @property
    def __name__(self) -> str:
        return f"Cached{self.pipeline_cls.__name__}"

    def __repr__(self) -> str:
        return f"CachedPipeline({self.pipeline_cls.__module__}.{self.pipeline_cls.__qualname__})"


# --- what the target is ----------------------------------------------------------------------
def _is_config(obj: Any) -> bool:
    return not isinstance(obj, nn.Module) and hasattr(obj, "pipeline_cls") and hasattr(obj, "num_gpus")


def _is_engine(obj: Any) -> bool:
    return hasattr(obj, "driver_worker") and hasattr(obj, "config")


def _pipeline(target: Any) -> Any:
    """The pipeline a target stands for (an engine's driver pipeline), or None for a bare model."""
    if _is_engine(target):
        target = target.driver_worker
    return None if isinstance(target, nn.Module) and not hasattr(target, "transformer") else target


def _transformer(target: Any) -> nn.Module:
    """The model to hook: the target itself, an engine's driver pipeline's, or a pipeline's."""
    pipeline = _pipeline(target)
    if pipeline is None:
        return target
    transformer = getattr(pipeline, "transformer", None)
    if isinstance(transformer, nn.Module):
        return transformer
    raise UnsupportedModelError(
        f"cannot enable caching on a {type(target).__name__}: expected a VideoSys config, engine or pipeline, "
        f"or a transformer. Supported models: {'; '.join(supported_models())}."
    )


def _resolve(method: Method, cfg: Any) -> Any:
    if isinstance(cfg, str) and hasattr(method.config_type, "preset"):
        return method.config_type.preset(cfg)
    if not isinstance(cfg, method.config_type):
        raise TypeError(
            f"enable_{method.name} takes a {method.config_type.__name__} or a preset name, got {type(cfg).__name__}."
        )
    return cfg


def _check_no_pab(config: Any) -> None:
    if getattr(config, "enable_pab", False):
        raise ValueError(
            "PAB is enabled on this VideoSys config; PAB and step caching both reuse work inside the block "
            "stack and do not combine. Set enable_pab=False (disable_pab(config)), or compare them as separate runs."
        )


def _install(pipeline_or_model: Any, method: Method, cfg: Any) -> BlockStackCache:
    _check_no_pab(getattr(pipeline_or_model, "_config", None))
    return method.apply(_transformer(pipeline_or_model), cfg, _pipeline(pipeline_or_model))


# --- public entry points ---------------------------------------------------------------------
def enable(target: Any, method_name: str, cfg: Any) -> Any:
    """Enable a caching method on a VideoSys config, engine (one GPU), pipeline or transformer."""
    method = METHODS[method_name]
    cfg = _resolve(method, cfg)
    if _is_config(target):
        _enable_on_config(target, method, cfg)
        return target
    if _is_engine(target) and getattr(target.config, "num_gpus", 1) > 1:
        raise ValueError(
            f"this engine already runs {target.config.num_gpus} ranks, and the worker processes cannot be "
            f"changed from here; call enable_{method.name}(config, ...) before VideoSysEngine(config)."
        )
    return _install(target, method, cfg)


def _enable_on_config(config: Any, method: Method, cfg: Any) -> None:
    _family(config)
    _check_no_pab(config)
    _check_no_method(config)
    setattr(config, f"enable_{method.name}", True)
    setattr(config, f"{method.name}_config", cfg)
    _wrap_pipeline_cls(config)


def _family(config: Any) -> ModelFamily:
    """The model family of a VideoSys config's pipeline (an error for an unsupported one)."""
    pipeline_cls = config.pipeline_cls
    return family_of_pipeline(pipeline_cls.pipeline_cls if isinstance(pipeline_cls, CachedPipeline) else pipeline_cls)


def _check_no_method(config: Any) -> None:
    for other in METHODS.values():
        if getattr(config, f"enable_{other.name}", False):
            raise RuntimeError(
                f"{other.label} is already enabled on this config; call disable_{other.name}(config) first."
            )


def _wrap_pipeline_cls(config: Any) -> None:
    if not isinstance(config.pipeline_cls, CachedPipeline):
        config.pipeline_cls = CachedPipeline(config.pipeline_cls)


def _unwrap_pipeline_cls(config: Any) -> None:
    if (
        isinstance(config.pipeline_cls, CachedPipeline)
        and not getattr(config, "enable_pab", False)
        and not any(getattr(config, f"enable_{m}", False) for m in METHODS)
    ):
        config.pipeline_cls = config.pipeline_cls.pipeline_cls


def disable(target: Any, method_name: str) -> None:
    """Undo :func:`enable`; the target behaves exactly as before it was enabled."""
    method = METHODS[method_name]
    if _is_config(target):
        setattr(target, f"enable_{method.name}", False)
        setattr(target, f"{method.name}_config", None)
        _unwrap_pipeline_cls(target)
        return
    model = _transformer(target)
    cache = get_cache(model)
    if cache is not None and cache.policy.method == method.label:
        cache.detach()


def get_stats(target: Any) -> RunStats | None:
    """Statistics of the latest sampling run on the target (None before its first run)."""
    if _is_config(target):
        raise TypeError("a config has not run anything; pass the engine or pipeline built from it.")
    model = _transformer(target)
    cache = get_cache(model)
    if cache is None:
        find_family(model)  # a clear error for an unsupported target
        raise RuntimeError(f"no caching method is enabled on this {type(model).__name__}.")
    return cache.latest_stats()


def enable_magcache(target: Any, config: MagCacheConfig | str) -> Any:
    """Enable MagCache on a VideoSys config (before the engine exists), an engine with one GPU, a
    pipeline, or a transformer. ``config`` is a :class:`MagCacheConfig` or a preset name."""
    return enable(target, "magcache", config)


def disable_magcache(target: Any) -> None:
    """Remove MagCache from what :func:`enable_magcache` was given."""
    disable(target, "magcache")


def enable_teacache(target: Any, config: TeaCacheConfig | str) -> Any:
    """Enable TeaCache on a VideoSys config (before the engine exists), an engine with one GPU, a
    pipeline, or a transformer. ``config`` is a :class:`TeaCacheConfig` or a preset name."""
    return enable(target, "teacache", config)


def disable_teacache(target: Any) -> None:
    """Remove TeaCache from what :func:`enable_teacache` was given."""
    disable(target, "teacache")


# --- PAB -------------------------------------------------------------------------------------
def enable_pab(config: Any, pab_config: Any = None) -> Any:
    """Turn on VideoSys's own Pyramid Attention Broadcast on a VideoSys config, made to run where
    VideoSys's own PAB breaks, so it can be compared in the same harness.

    Each rank's freshly built pipeline gets its family's fix (``ModelFamily.prepare_pab``): on
    upstream VideoSys ``STDiT3.forward`` calls its blocks without ``all_timesteps``, which PAB's MLP
    broadcast (on by default) reads, so Open-Sora's fix hands the blocks the run's list, as the
    older VideoSys copy does itself. ``pab_config`` defaults to a fresh instance of the family's
    PAB config: VideoSys's default argument is one instance, with PAB's stored MLP outputs, shared
    by every config that does not pass one.
    VideoSys keeps the PAB settings of the latest PAB pipeline in a process-wide manager, which
    later pipelines of that process read whatever their config says.
    """
    if not _is_config(config):
        raise TypeError(
            f"enable_pab takes a VideoSys config, got {type(config).__name__}: VideoSys sets PAB up when "
            "it builds the pipeline, so enable it on the config before building the engine or pipeline."
        )
    family = _family(config)
    for other in METHODS.values():
        if getattr(config, f"enable_{other.name}", False):
            raise ValueError(
                f"{other.label} is enabled on this config; PAB and step caching both reuse work inside the block "
                f"stack and do not combine. Call disable_{other.name}(config) first, or compare them as separate runs."
            )
    if pab_config is None:
        pab_config = family.default_pab_config(config)
    config.enable_pab = True
    config.pab_config = pab_config
    _wrap_pipeline_cls(config)
    return config


def disable_pab(config: Any) -> None:
    """Undo :func:`enable_pab` on a config (pipelines already built keep PAB)."""
    config.enable_pab = False
    _unwrap_pipeline_cls(config)
