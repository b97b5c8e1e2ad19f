"""VideoSys config classes that take the caching methods as engine options, the way VideoSys
configs take ``enable_pab`` / ``pab_config``. Importing this module imports VideoSys."""

from __future__ import annotations

from typing import Any

from .magcache import MagCacheConfig
from .plugin import enable_magcache as _enable_magcache
from .videosys_compat import import_videosys

_videosys = import_videosys()


class OpenSoraConfig(_videosys.OpenSoraConfig):
    """``videosys.OpenSoraConfig`` plus ``enable_magcache`` and ``magcache_config``.

    Every VideoSys option passes through unchanged; with ``enable_magcache=True`` each rank the
    engine starts runs MagCache (``magcache_config`` defaults to the ``opensora-fast`` preset).
    """

    def __init__(
        self,
        *args: Any,
        enable_magcache: bool = False,
        magcache_config: MagCacheConfig | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.enable_magcache = False
        self.magcache_config = None
        if enable_magcache:
            _enable_magcache(self, magcache_config if magcache_config is not None else "opensora-fast")
        elif magcache_config is not None:
            raise ValueError("magcache_config is given but enable_magcache is False; set enable_magcache=True.")


