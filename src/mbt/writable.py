"""Whether an output directory can be written, checked before any work and without
creating it (a report that is refused for another reason must leave nothing behind)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["why_unwritable"]


def why_unwritable(directory: str | Path) -> str | None:
    """None if ``directory`` exists and can be written, or could be created; else why not
    (a file in the way, a read-only file system, no permission), as an ``strerror``."""
    path = Path(directory).expanduser().absolute()
    for ancestor in (path, *path.parents):
        if not ancestor.exists():
            continue
        if not ancestor.is_dir():
            return f"{os.strerror(errno.ENOTDIR)}: {ancestor}"
        if not os.access(ancestor, os.W_OK | os.X_OK):  # EROFS counts, even for root
            try:
                ro = bool(os.statvfs(ancestor).f_flag & os.ST_RDONLY)
            except OSError:
                ro = False
            return f"{os.strerror(errno.EROFS if ro else errno.EACCES)}: {ancestor}"
        return None
    return None
