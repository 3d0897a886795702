"""The magics' only door into miniray: public names, read lazily, never runtime internals.

    magic / Dashboard thread ──► RuntimeSource ──► miniray.is_initialized, miniray.events,
                                                   miniray.util.state, miniray.cluster_resources

Everything the magics know about a running program comes through here, so tests can hand the
dashboard a fake source, and nothing in the magics ever starts a runtime by accident: every read
first checks ``miniray.is_initialized()``.
"""
from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

NOT_INITIALIZED = ("miniray is not initialized: call miniray.init() first, for example "
                   "miniray.init(num_cpus=2), then run %{magic} again")


class RuntimeSource:
    """Reads the running miniray through its public API."""

    def _miniray(self):
        try:
            import miniray
        except Exception as exc:  # an unfinished or broken install
            raise UsageError(f"miniray could not be imported ({type(exc).__name__}: {exc})")
        return miniray

    def initialized(self) -> bool:
        try:
            return bool(self._miniray().is_initialized())
        except UsageError:
            return False

    def require(self, magic: str) -> None:
        """Raise the UsageError that tells a student to call ``miniray.init()``."""
        self._miniray()
        if not self.initialized():
            raise UsageError(NOT_INITIALIZED.format(magic=magic))

    def cursor(self) -> int:
        import miniray.events

        return miniray.events.cursor()

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        import miniray.events

        return miniray.events.events(since)

    def list_objects(self) -> list[dict[str, Any]]:
        from miniray.util import state

        return list(state.list_objects())

    def memory_summary(self) -> dict[str, Any]:
        from miniray.util import state

        return state.memory_summary()

    def num_cpus(self) -> int:
        return int(self._miniray().cluster_resources().get("CPU", 0) or 0)
