"""The one way gbench writes a file: atomically, so a reader (or a killed run) sees the old content or
the new, never a torn file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def write_atomic(path: Path, write: Callable[[IO[Any]], object], binary: bool = False) -> None:
    """Call ``write(file)`` so that ``path`` holds either the old or the new content, never a torn file:
    a temporary file in the same folder, flushed to disk, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
