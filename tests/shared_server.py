"""One server for a whole test session, shared by every module that imports its fixture.

pytest registers a separate copy of an imported session fixture in each module, so the
copies share one :class:`SharedServer`: the first to run starts the server, the last to
finish stops it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

S = TypeVar("S")


class SharedServer(Generic[S]):
    def __init__(self, start: Callable[[], S], stop: Callable[[S], None]) -> None:
        self._start, self._stop = start, stop
        self.server: S | None = None
        self.users = 0

    @contextlib.contextmanager
    def use(self) -> Iterator[S]:
        if self.server is None:
            self.server = self._start()
        self.users += 1
        try:
            yield self.server
        finally:
            self.users -= 1
            if self.users == 0:
                self._stop(self.server)
                self.server = None
