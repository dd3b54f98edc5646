"""Reading files whose content nobody vouches for, with bounds decided before reading.

Opening never blocks (O_NONBLOCK: a FIFO or a device node is refused, not waited on), only
regular files are read, small files (pointers) are read up to a limit, and a torch archive is
accepted only when its records are stored (torch.save never compresses) and the sizes they
declare fit in the file: what a checkpoint can make the reader allocate is bounded by its size.
"""

from __future__ import annotations

import fcntl
import os
import stat
import zipfile
from pathlib import Path
from typing import BinaryIO

MAX_POINTER_BYTES = 4096
MAX_CHECKPOINT_BYTES = 2 * 1024**3
ZIP_MAGIC = b"PK\x03\x04"


class UnsafeFileError(OSError):
    """A file that is not read: not a regular file, too large, or declaring more than it holds."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: Path | str, max_bytes: int | None = None) -> BinaryIO:
    """Open `path` for reading if it is a regular file (of at most `max_bytes`); never blocks."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)  # of what was opened: no race with a file swapped in after a check
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"'{path}' is {_kind(info.st_mode)}, not a regular file; not read")
        if max_bytes is not None and info.st_size > max_bytes:
            raise UnsafeFileError(f"'{path}' is {info.st_size} bytes, more than the {max_bytes} allowed; not read")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_small_text(path: Path | str, max_bytes: int = MAX_POINTER_BYTES) -> str:
    """The text of a small regular file (UnsafeFileError if larger; UnicodeDecodeError if not text)."""
    with open_regular(path, max_bytes) as handle:
        data = handle.read(max_bytes + 1)  # the file may have grown since fstat
    if len(data) > max_bytes:
        raise UnsafeFileError(f"'{path}' holds more than {max_bytes} bytes; not read")
    return data.decode()


def check_torch_archive(handle: BinaryIO, path: Path | str) -> None:
    """A torch.save zip archive whose records are stored and fit in the file (else UnsafeFileError).

    zipfile reads only the central directory here; the handle is rewound for torch.load.
    Raises zipfile.BadZipFile for a damaged archive and ValueError for a file that is not one.
    """
    size = os.fstat(handle.fileno()).st_size
    if handle.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
        raise ValueError(
            "not a torch zip archive (what torch.save writes); legacy and raw pickle files are refused "
            "without running them"
        )
    handle.seek(0)
    with zipfile.ZipFile(handle) as archive:
        declared = 0
        for record in archive.infolist():
            if record.compress_type != zipfile.ZIP_STORED:
                raise UnsafeFileError(
                    f"'{path}': record '{record.filename}' is compressed (torch.save never compresses); not read"
                )
            declared += record.file_size
        if declared > size:
            raise UnsafeFileError(f"'{path}': its records declare {declared} bytes, more than its {size}; not read")
    handle.seek(0)
