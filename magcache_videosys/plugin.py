"""Turning a caching method on and off for whatever the user holds: a VideoSys config, engine,
pipeline, or the transformer itself.

A config is the only thing that reaches the worker processes ``VideoSysEngine`` spawns for
``num_gpus > 1`` (each rank calls ``config.pipeline_cls(config)``), so enabling on a config stores
the method's settings on it and swaps ``pipeline_cls`` for :class:`CachedPipeline`, a picklable
builder that installs the method on every rank's freshly built pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .adapters import UnsupportedModelError, find_adapter, supported_models, supported_pipelines
from .hooks import BlockStackCache, get_cache
from .magcache import MagCacheConfig, apply_magcache
from .stats import RunStats


@dataclass(frozen=True)
class Method:
    """A caching method as the plugin sees it: its config type and how to install it."""

    name: str  # config attributes are enable_<name> and <name>_config
    config_type: type
    apply: Callable[[nn.Module, Any], BlockStackCache]
    label: str  # the policy's method name, as in errors and statistics


METHODS: dict[str, Method] = {
    "magcache": Method("magcache", MagCacheConfig, apply_magcache, "MagCache"),
}


class CachedPipeline:
    """Stands in for ``config.pipeline_cls``: builds the VideoSys pipeline, then installs the
    caching method the config carries. Picklable (it holds only the pipeline class), so it travels
    with the config into every spawned rank."""

    def __init__(self, pipeline_cls: type) -> None:
        self.pipeline_cls = pipeline_cls

    def __call__(self, config: Any, *args: Any, **kwargs: Any) -> Any:
        pipeline = self.pipeline_cls(config, *args, **kwargs)
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


def _transformer(target: Any) -> nn.Module:
    """The model to hook: the target itself, an engine's driver pipeline's, or a pipeline's."""
    if _is_engine(target):
        target = target.driver_worker
    if isinstance(target, nn.Module) and not hasattr(target, "transformer"):
        return target
    transformer = getattr(target, "transformer", None)
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
            "stack and do not combine. Set enable_pab=False, or compare them as separate runs."
        )


def _install(pipeline_or_model: Any, method: Method, cfg: Any) -> BlockStackCache:
    _check_no_pab(getattr(pipeline_or_model, "_config", None))
    return method.apply(_transformer(pipeline_or_model), cfg)


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
    pipeline_cls = config.pipeline_cls
    base = pipeline_cls.pipeline_cls if isinstance(pipeline_cls, CachedPipeline) else pipeline_cls
    if getattr(base, "__name__", "") not in supported_pipelines():
        raise UnsupportedModelError(
            f"{getattr(base, '__name__', base)!r} is not a supported VideoSys pipeline; supported: "
            f"{', '.join(supported_pipelines())}."
        )
    _check_no_pab(config)
    for other in METHODS.values():
        if getattr(config, f"enable_{other.name}", False):
            raise RuntimeError(
                f"{other.label} is already enabled on this config; call disable_{other.name}(config) first."
            )
    setattr(config, f"enable_{method.name}", True)
    setattr(config, f"{method.name}_config", cfg)
    if not isinstance(pipeline_cls, CachedPipeline):
        config.pipeline_cls = CachedPipeline(pipeline_cls)


def disable(target: Any, method_name: str) -> None:
    """Undo :func:`enable`; the target behaves exactly as before it was enabled."""
    method = METHODS[method_name]
    if _is_config(target):
        setattr(target, f"enable_{method.name}", False)
        setattr(target, f"{method.name}_config", None)
        if isinstance(target.pipeline_cls, CachedPipeline) and not any(
            getattr(target, f"enable_{m}", False) for m in METHODS
        ):
            target.pipeline_cls = target.pipeline_cls.pipeline_cls
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
        find_adapter(model)  # a clear error for an unsupported target
        raise RuntimeError(f"no caching method is enabled on this {type(model).__name__}.")
    return cache.latest_stats()


def enable_magcache(target: Any, config: MagCacheConfig | str) -> Any:
    """Enable MagCache on a VideoSys config (before the engine exists), an engine with one GPU, a
    pipeline, or a transformer. ``config`` is a :class:`MagCacheConfig` or a preset name."""
    return enable(target, "magcache", config)


def disable_magcache(target: Any) -> None:
    """Remove MagCache from what :func:`enable_magcache` was given."""
    disable(target, "magcache")
