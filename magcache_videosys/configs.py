"""VideoSys config classes that take the caching methods as engine options, the way VideoSys
configs take ``enable_pab`` / ``pab_config``. Importing this module imports VideoSys."""

from __future__ import annotations

import inspect
from typing import Any

from .magcache import MagCacheConfig
from .plugin import enable_magcache as _enable_magcache
from .plugin import enable_pab as _enable_pab
from .plugin import enable_schedule as _enable_schedule
from .plugin import enable_teacache as _enable_teacache
from .static_schedule import StaticScheduleConfig
from .teacache import TeaCacheConfig
from .videosys_compat import import_videosys

_videosys = import_videosys()
# VideoSys's default pab_config: one OpenSoraPABConfig instance shared by every config.
_SHARED_PAB_CONFIG = inspect.signature(_videosys.OpenSoraConfig.__init__).parameters["pab_config"].default


class OpenSoraConfig(_videosys.OpenSoraConfig):
    """``videosys.OpenSoraConfig`` plus ``enable_magcache`` / ``magcache_config`` and
    ``enable_teacache`` / ``teacache_config``.

    Every VideoSys option passes through unchanged; with ``enable_magcache=True`` each rank the
    engine starts runs MagCache (``magcache_config`` defaults to the ``opensora-fast`` preset), with
    ``enable_teacache=True`` TeaCache (``teacache_config`` defaults to ``teacache-slow``), with
    ``enable_schedule=True`` the static schedule ``schedule_config`` (a config or a schedule file;
    required). At most one of them, and none with ``enable_pab``, which goes through
    :func:`~magcache_videosys.enable_pab` so that PAB also runs on upstream VideoSys.
    """

    def __init__(
        self,
        *args: Any,
        enable_magcache: bool = False,
        magcache_config: MagCacheConfig | str | None = None,
        enable_teacache: bool = False,
        teacache_config: TeaCacheConfig | str | None = None,
        enable_schedule: bool = False,
        schedule_config: StaticScheduleConfig | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.enable_magcache = False
        self.magcache_config = None
        self.enable_teacache = False
        self.teacache_config = None
        self.enable_schedule = False
        self.schedule_config = None
        enabled = [
            n
            for n, on in (("magcache", enable_magcache), ("teacache", enable_teacache), ("schedule", enable_schedule))
            if on
        ]
        if len(enabled) > 1:
            both = "both" if len(enabled) == 2 else "all"
            raise ValueError(
                f"{' and '.join(f'enable_{n}' for n in enabled)} are {both} set; these methods skip the same "
                "block-stack passes and do not combine. Enable one, and compare them as separate runs."
            )
        if enable_schedule and schedule_config is None:
            raise ValueError("enable_schedule=True needs schedule_config: a StaticScheduleConfig or a schedule file.")
        if self.enable_pab:
            _enable_pab(self, None if self.pab_config is _SHARED_PAB_CONFIG else self.pab_config)
        _enable_if(
            "magcache", enable_magcache, magcache_config, lambda cfg: _enable_magcache(self, cfg), "opensora-fast"
        )
        _enable_if(
            "teacache", enable_teacache, teacache_config, lambda cfg: _enable_teacache(self, cfg), "teacache-slow"
        )
        _enable_if("schedule", enable_schedule, schedule_config, lambda cfg: _enable_schedule(self, cfg), None)


def _enable_if(name: str, enabled: bool, cfg: Any, enable: Any, default: str | None) -> None:
    if enabled:
        enable(cfg if cfg is not None else default)
    elif cfg is not None:
        raise ValueError(f"{name}_config is given but enable_{name} is False; set enable_{name}=True.")
