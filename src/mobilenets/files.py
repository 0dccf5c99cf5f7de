"""Output folders: checked before long work starts, locked while a run writes them, and cleaned of
the temporary files a killed process leaves behind.

Everything here raises `OutputError` (an OSError) with one line naming the path, what is wrong and
the fix; the CLI prints it and exits 1.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LOCK_NAME = ".mobilenets.lock"
TEMPORARY_PATTERN = ".*.tmp"  # checkpoint.save_checkpoint's temporary files: ".NAME.RANDOM.tmp"

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the pid in the lock file is then the only guard
    fcntl = None  # type: ignore[assignment]  # mypy cannot type an optional module import otherwise


class OutputError(OSError):
    """An output path that cannot be written (or is in use); the message says which and why."""

    def __str__(self) -> str:
        return self.args[0] if self.args else super().__str__()


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def check_writable_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create `folder` if needed and prove a file can be written in it (by writing one), so a
    read-only disk or a missing permission shows before hours of work, not after."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder} is an existing file, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(
            f"cannot write to the {what} {folder} ({_reason(error)}); "
            f"choose another path or fix its permissions"
        ) from None
    return folder


def check_writable_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """The folder of `path` can take a new file, and `path` itself is not a folder. Nothing is
    created: a folder that does not exist yet is made when the file is written, and checked here
    through its nearest existing parent (a command that fails before writing leaves no folder)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; name a file")
    nearest = next(folder for folder in path.parents if folder.exists())  # "." or "/" at the latest
    check_writable_folder(nearest, f"folder of the {what}")
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def write_atomically(path: str | os.PathLike, content: str | bytes) -> Path:
    """Write `content` to `path` so that a crash at any moment leaves the old file or the new one,
    never a torn one: a temporary file in the same folder, flushed and fsynced, renamed over `path`,
    then the folder fsynced so the rename itself survives a power loss. The one way the project
    writes a small file (sidecars, gates, metrics, reports); checkpoints use the same steps around
    safetensors' writer."""
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # as open() would create it, not mkstemp's private 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)
    return path


def write_figure(figure: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """A matplotlib figure as a PNG at `path`, written like every other file (write_atomically): a
    crash or a full disk never leaves a torn image in place of the old one."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return write_atomically(path, buffer.getvalue())


def check_new_output(path: str | os.PathLike, force: bool, flag: str = "-o") -> Path:
    """`path` may be written: it does not exist yet, or --force says to replace it."""
    path = Path(path)
    if path.exists() and not force:
        raise ValueError(f"{path} exists: pass --force to replace it, or choose another {flag}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; {flag} names a file")
    return path


def replace_folder(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the complete folder `staging` at `target`; an old `target` is moved aside under a hidden
    name first and removed only once the new one is in place, so a failure leaves one of the two
    whole (the web export and `train --force` replace folders this way)."""
    staging, target = Path(staging), Path(target)
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
        os.replace(staging, target)
        fsync_folder(target.parent)
        shutil.rmtree(old)
    else:
        os.replace(staging, target)
        fsync_folder(target.parent)


def portable_path(text: str, start: str | os.PathLike | None = None) -> str:
    """`text` as a file header records it: an absolute path becomes relative to `start` (the
    folder the run started in), so no file carries the writing machine's home or user names;
    relative paths, keys and URLs stay as typed."""
    if not os.path.isabs(text):
        return text
    try:
        return os.path.relpath(text, start if start is not None else os.getcwd())
    except ValueError:  # another drive on Windows: no relative form, keep the name alone
        return os.path.basename(text)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def umask() -> int:
    """The process's file-creation mask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def missing_folders(folder: str | os.PathLike) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first: what creating it
    makes (see `remove_unused_folders`)."""
    folder = Path(folder)
    return [path for path in (folder, *folder.parents) if not path.exists()]


def remove_unused_folders(created: list[Path]) -> None:
    """Remove the folders a run created (`missing_folders` before it began, deepest first) when
    they hold nothing but what a run writes before its first result (its lock and its
    train_config.json, in the deepest): a run that failed early leaves the disk as it found it."""
    for index, folder in enumerate(created):
        disposable = {LOCK_NAME, "train_config.json"} if index == 0 else set()
        try:
            contents = {entry.name for entry in folder.iterdir()}
            if not contents <= disposable:
                return  # this one stays, and so do its parents
            for name in contents:
                (folder / name).unlink()
            folder.rmdir()
        except OSError:
            return  # best effort: never hide the error that brought us here


class OutputLock:
    """An exclusive lock on an output folder for the life of a run: a second run on the same
    folder fails at once. The lock file records the holder's pid and host; a lock left by a process
    that died (kill -9, power loss) is taken over: the kernel releases flock() locks of dead
    processes, and without flock a pid that no longer runs on this host means stale."""

    def __init__(self, folder: str | os.PathLike, what: str = "--output"):
        self.path = Path(folder) / LOCK_NAME
        self.what = what
        self.fd: int | None = None

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def _refuse(self, holder: str) -> None:
        raise OutputError(
            f"{self.path.parent} is in use by another run ({holder or 'unknown process'}); "
            f"wait for it to finish or choose another {self.what}"
        )

    def acquire(self) -> OutputLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise OutputError(f"cannot create the lock file {self.path} ({_reason(error)})") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                self._refuse(self._holder())
        else:
            fields = self._holder().split()  # "pid PID on HOST"
            if (
                len(fields) == 4
                and fields[1].isdigit()
                and fields[3] == socket.gethostname()
                and int(fields[1]) != os.getpid()
                and _pid_alive(int(fields[1]))
            ):
                os.close(fd)
                self._refuse(" ".join(fields))
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            # The file stays (unlinking it would let a process that opened it just before lock a
            # different inode than the next run); its content is only read for messages.
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing releases the flock
            self.fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes in `folder` (call only while holding
    its lock: a running writer's temporary file is not stale)."""
    removed = []
    for path in Path(folder).glob(TEMPORARY_PATTERN):
        if path.is_file():
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


__all__ = [
    "LOCK_NAME",
    "OutputError",
    "OutputLock",
    "check_writable_file",
    "check_writable_folder",
    "fsync_folder",
    "portable_path",
    "replace_folder",
    "remove_stale_temporaries",
    "umask",
    "missing_folders",
    "remove_unused_folders",
    "write_atomically",
]
