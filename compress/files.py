"""What a user's path names, asked so that the system's refusals (a name too long, a byte the file
system does not take) are our one-line error instead of a traceback. A leaf module."""

from __future__ import annotations

from pathlib import Path

from compress.errors import CompressError


def path_kind(path: Path, what: str) -> str:
    """``file``, ``dir``, ``missing`` or ``other`` (a device, a socket); ``what`` names the flag or
    field that gave the path, for the error when the system refuses to look at it at all."""
    try:
        if path.is_file():
            return "file"
        if path.is_dir():
            return "dir"
        return "other" if path.exists() else "missing"
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, an embedded NUL
        shown = str(path) if len(str(path)) <= 120 else str(path)[:117] + "..."
        raise CompressError(f"{what}: {getattr(exc, 'strerror', None) or exc}: {shown}") from None
