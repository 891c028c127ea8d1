"""What a user's path names, asked so that the system's refusals (a name too long, a byte the file
system does not take) are our one-line error instead of a traceback. A leaf module."""

from __future__ import annotations

import os
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


def check_output(output: Path, source: Path, overwrite: bool, *, example: str, same: str) -> None:
    """A command's ``-o`` file, refused before any work: never the checkpoint it reads, never an
    existing file unasked. For the messages: ``example``, a file name to suggest; ``same``, what
    to say when ``output`` is ``source`` ("is the checkpoint " + same)."""
    if output.is_dir():
        raise CompressError(f"-o: {output} is a directory; give a file name such as {example}")
    if output.exists() and output.resolve() == source.resolve():
        raise CompressError(f"-o: {output} is the checkpoint {same}")
    if output.exists() and not overwrite:
        raise CompressError(f"-o: {output} exists; pass --overwrite to replace it, or give another file")
    if not output.parent.is_dir():
        raise CompressError(f"-o: directory {output.parent} does not exist")
    if not os.access(output.parent, os.W_OK):
        raise CompressError(f"-o: directory {output.parent} is not writable")
