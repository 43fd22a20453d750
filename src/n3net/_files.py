"""Write a file so that it is always either complete or untouched: :func:`atomic_write`."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write", "check_writable"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The caller writes the whole file to the yielded path. Then it gets the mode any new file
    would get (some writers create 0600 files) and is renamed over ``path`` (``os.replace`` is
    atomic on POSIX and Windows). On any error the temporary file is removed and ``path`` keeps
    its previous content.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_write(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    target = Path(path)
    descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        umask = os.umask(0)
        os.umask(umask)
        temporary.chmod(0o666 & ~umask)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def check_writable(folder: str | os.PathLike) -> None:
    """Raise a one-line PermissionError unless a file can be created in ``folder``.

    ``folder`` need not exist yet: its nearest existing ancestor is probed, by creating and
    removing a temporary file (``os.access`` says yes to root on a read-only mount's folders).
    """
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"cannot write into '{folder}': '{probe}' is not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PermissionError(f"cannot write into '{probe}': {reason}") from None
