"""A configuration file read again whenever it changes, without a restart."""

import logging
import os
import threading
from typing import Callable, Generic, Iterable, Optional, Tuple, TypeVar

T = TypeVar("T")
log = logging.getLogger("watchfile")


def config_lines(text: str, inline_comments: bool = False) -> Iterable[Tuple[int, str]]:
    """The (line number, line) pairs that matter: blank lines and lines whose
    first non-blank character is `#` are dropped; with inline_comments, so is
    whatever follows a `#` elsewhere on a line."""
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if inline_comments:
            line = line.split("#", 1)[0].strip()
        if line and not line.startswith("#"):
            yield number, line


class WatchedFile(Generic[T]):
    """The parsed contents of a file, parsed again when its mtime (or size or
    inode: editors that save by rename) changes.

    The check is one stat() per get(), cheap enough to do on every call,
    so nothing runs in the background. While the file is missing or
    unreadable the last good contents stay (`empty` before any).
    """

    def __init__(self, path: str, parse: Callable[[str], T], empty: T):
        self.path = path
        self._parse = parse
        self._value = empty
        self._seen: Optional[tuple] = None
        self._lock = threading.Lock()
        self.get()

    def get(self) -> T:
        try:
            st = os.stat(self.path)
            stamp: tuple = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError as err:
            stamp = ("error", err.strerror)
        with self._lock:
            if stamp == self._seen:
                return self._value
            self._seen = stamp
            try:
                # Stat before reading: a write landing during the read changes
                # the mtime again, so the next get() reads the file once more.
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                log.info("reading %s", self.path)
                self._value = self._parse(text)
            except OSError as err:
                log.warning("cannot read %s (%s): keeping what was read before", self.path, err.strerror)
            return self._value
