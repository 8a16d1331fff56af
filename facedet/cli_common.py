"""Helpers shared by every CLI command: one-line errors, output-file safety, progress.

Commands are thin: they parse typed options and call one library function.  Any
:class:`~facedet.errors.FacedetError` raised below them becomes ``error: <msg>``
on stderr and exit status 1 (see :func:`handle_errors`).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import typer

from facedet.errors import FacedetError
from facedet.fileutil import atomic_path

T = TypeVar("T")

EXIT_ERROR = 1  # the command could not do its job
EXIT_PARTIAL = 2  # a batch ran, but some inputs failed (each was reported)


def _emit(line: str) -> None:
    # tqdm.write clears any active progress bar, prints, and redraws it below.
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def error(message: str) -> None:
    """Print ``error: message`` as one line on stderr."""
    _emit(f"error: {' '.join(str(message).split())}")


def warn(message: str) -> None:
    """Print ``warning: message`` as one line on stderr."""
    _emit(f"warning: {' '.join(str(message).split())}")


def handle_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator for typer commands: FacedetError -> one-line error + exit 1.

    Also turns OSError (permissions, full disk, ...) and KeyboardInterrupt into
    one-line messages, since those are caused by the environment, not by bugs.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except FacedetError as exc:
            error(str(exc))
            raise typer.Exit(EXIT_ERROR) from None
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            error(f"{exc.strerror or exc}{where}")
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def check_output_file(path: Path | str, force: bool) -> Path:
    """Validate an output file path before any work starts.

    Raises FacedetError if the file exists and ``force`` is false, or if its
    directory cannot be created or written.  Returns the path.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FacedetError(f"{path} already exists (use --force to overwrite)")
    if path.exists() and path.is_dir():
        raise FacedetError(f"{path} is a directory, expected a file path")
    check_output_dir(path.parent if str(path.parent) else Path("."))
    return path


def check_output_dir(path: Path | str) -> Path:
    """Create ``path`` (and parents) if needed and check that it is writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FacedetError(f"{path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FacedetError(f"cannot create output directory {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise FacedetError(f"output directory {path} is not writable")
    return path


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename (no half files)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it", disable: bool | None = None) -> Iterator[T]:
    """A tqdm progress bar on stderr, hidden when there is a single item or no TTY-less need.

    ``disable=None`` shows the bar only when there is more than one item.
    """
    from tqdm import tqdm

    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if disable is None:
        disable = total is not None and total <= 1
    return iter(tqdm(items, total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr, dynamic_ncols=True, leave=False))


def check_unit_interval(name: str, value: float) -> float:
    """Validate that an option lies in [0, 1] (thresholds)."""
    if not (0.0 <= value <= 1.0):
        raise FacedetError(f"{name} must be in [0, 1], got {value}")
    return value
