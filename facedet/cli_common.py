"""Helpers shared by every CLI command: one-line errors, exit codes, shared options, progress.

Commands are thin: they parse typed options and call one library function.  Every
error is one line on stderr, ``error: <msg>``, never a traceback or a boxed panel:

* a :class:`~facedet.errors.FacedetError` raised below a command becomes that line
  (see :func:`handle_errors`);
* the option parser's own errors (a missing argument, ``-t abc``, a value out of
  its range) are caught by :class:`OneLineErrors`, the root command's class.

Exit status (README.md, "Exit status"):

====  ==================================================================
0     success
1     the command could not do its job (missing or corrupt input, an
      output that exists without ``--force``, ...)
2     usage error: the command line is wrong (unknown option, missing
      argument, a value out of range, options that contradict each other);
      nothing was done.  2 is click's convention for usage errors.
3     a batch ran, but some inputs failed (each was reported and skipped;
      the results of the others were written)
130   interrupted (Ctrl-C)
====  ==================================================================
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import typer
from typer.core import TyperGroup

try:  # recent typer vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions

from facedet.errors import FacedetError, UsageError
from facedet.fileutil import atomic_path

T = TypeVar("T")

EXIT_OK = 0
EXIT_ERROR = 1  # the command could not do its job
EXIT_USAGE = 2  # the command line is wrong (click's convention); nothing was done
EXIT_PARTIAL = 3  # a batch ran, but some inputs failed (each was reported)
EXIT_INTERRUPTED = 130

# Seconds between the plain progress lines written when stderr is not a terminal.
PLAIN_PROGRESS_SECONDS = 30.0


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
    """Decorator for typer commands: FacedetError -> one-line error + exit status.

    :class:`~facedet.errors.UsageError` exits with :data:`EXIT_USAGE`, any other
    FacedetError with :data:`EXIT_ERROR`.  Also turns OSError (permissions, full
    disk, ...) and KeyboardInterrupt into one-line messages, since those are
    caused by the environment, not by bugs.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except UsageError as exc:
            error(str(exc))
            raise typer.Exit(EXIT_USAGE) from None
        except FacedetError as exc:
            error(str(exc))
            raise typer.Exit(EXIT_ERROR) from None
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            error(f"{exc.strerror or exc}{where}")
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def usage_message(exc: click_exceptions.ClickException) -> str:
    """One line for an error of the option parser: its message plus where help is."""
    msg = " ".join(exc.format_message().split()).rstrip(".")
    if len(msg) > 1 and msg[0].isupper() and msg[1].islower():
        msg = msg[0].lower() + msg[1:]
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        msg += f" (see '{ctx.command_path} --help')"
    return msg


class OneLineErrors(TyperGroup):
    """Root command class: the parser's errors as one line, with the exit codes above.

    click and typer print usage errors as a multi-line usage block or a boxed
    panel; this prints ``error: <message> (see '<command> --help')`` instead and
    exits with :data:`EXIT_USAGE`.  ``facedet`` alone still prints the help.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except click_exceptions.NoArgsIsHelpError as exc:
            if not standalone_mode:
                raise
            exc.show()
            sys.exit(EXIT_USAGE)
        except click_exceptions.ClickException as exc:
            if not standalone_mode:
                raise
            error(usage_message(exc))
            sys.exit(EXIT_USAGE if isinstance(exc, click_exceptions.UsageError) else exc.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            error("aborted")
            sys.exit(EXIT_ERROR)
        if not standalone_mode:
            return rv
        # Without standalone mode typer returns the exit code of typer.Exit / ctx.exit, else the command's value.
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


# --------------------------------------------------------------------------- options shared by commands
#
# One definition per option that several commands take, so that their defaults,
# ranges and help cannot drift apart.

THRESHOLD_HELP = "Report a face when its score is above X (strictly); X in [0, 1)."
NMS_THRESHOLD_HELP = "NMS: a box is dropped when its IoU with a higher-scoring box is above X; X in [0, 1]."
PYRAMID_HELP = (
    "Also run at 1.5x (when the image has the pixels), 1/2 and 1/4 of the base scale and merge the boxes "
    "(more faces found, about 3.5x the time); --single-scale is the paper's area-preserving test."
)


def threshold_option(help: str = THRESHOLD_HELP, default: float | None = None) -> Any:
    """``--threshold/-t``: the score a face must exceed (default: detect's)."""
    from facedet.inference import DEFAULT_THRESHOLD

    return typer.Option(DEFAULT_THRESHOLD if default is None else default, "--threshold", "-t", help=help, metavar="X")


def nms_threshold_option(help: str = NMS_THRESHOLD_HELP) -> Any:
    from facedet.inference import DEFAULT_NMS_THRESHOLD

    return typer.Option(DEFAULT_NMS_THRESHOLD, "--nms-threshold", help=help, metavar="X")


def pyramid_option(help: str = PYRAMID_HELP) -> Any:
    """``--pyramid/--single-scale``, on by default (what ``facedet detect`` runs)."""
    return typer.Option(True, "--pyramid/--single-scale", help=help)


BACKEND_HELP = (
    "What runs float weights: auto (onnxruntime when it is installed -- no torch import once the weights "
    "are exported to the cache, which makes a one-photo run about 5x quicker to finish -- else torch), torch, or "
    "onnxruntime (the package's onnx extra: pip install onnxruntime onnx). An integer model always runs "
    "in the integer interpreter."
)
# Threads of the network backend (torch, onnxruntime intra-op, the integer interpreter).  One thread
# by measurement (docs/onnx.md, "Threads"): on a 2-core machine a second thread gains little when
# the machine is idle and costs up to 12x when other processes load it.
DEFAULT_THREADS = 1
THREADS_HELP = "Threads the network may use (torch, onnxruntime, or the integer interpreter). More help only on an otherwise idle machine with spare cores."


def backend_option(help: str = BACKEND_HELP) -> Any:
    """``--backend``: auto, torch or onnxruntime (checked by :func:`facedet.backends.resolve_backend`)."""
    return typer.Option("auto", "--backend", help=help, metavar="auto|torch|onnxruntime")


def threads_option(help: str = THREADS_HELP) -> Any:
    """``--threads N``, at least 1, default :data:`DEFAULT_THREADS`."""
    return typer.Option(DEFAULT_THREADS, "--threads", min=1, help=help, metavar="N")


def force_option(help: str = "Overwrite existing output files.") -> Any:
    """``--force``: a plain flag in every command (there is no ``--no-force``)."""
    return typer.Option(False, "--force", help=help)


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


def progress(
    items: Iterable[T],
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool | None = None,
    *,
    interval: float | None = None,
) -> Iterator[T]:
    """Progress over ``items`` on stderr: a bar on a terminal, plain lines otherwise.

    On a terminal this is a tqdm bar (redrawn in place, removed at the end).
    When stderr is a file or a pipe (logs, CI) a bar would write carriage
    returns into it, so instead a plain line ``desc: n/total unit (p%), r unit/s``
    is written at most every ``interval`` seconds (default
    :data:`PLAIN_PROGRESS_SECONDS`); a short run writes none.
    ``disable=None`` shows progress only when there is more than one item.
    """
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if disable is None:
        disable = total is not None and total <= 1
    if disable:
        return iter(items)
    if _stderr_is_terminal():
        from tqdm import tqdm

        return iter(tqdm(items, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False))
    return _plain_progress(items, total, desc, unit, PLAIN_PROGRESS_SECONDS if interval is None else interval)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _plain_progress(items: Iterable[T], total: int | None, desc: str, unit: str, interval: float) -> Iterator[T]:
    start = last = time.monotonic()
    n = 0
    for item in items:
        yield item
        n += 1
        now = time.monotonic()
        if now - last >= interval and (total is None or n < total):
            last = now
            of = f"/{total}" if total else ""
            pct = f" ({100.0 * n / total:.0f}%)" if total else ""
            _emit(f"{desc or 'progress'}: {n}{of} {unit}{pct}, {n / max(now - start, 1e-9):.1f} {unit}/s")


def check_unit_interval(name: str, value: float) -> float:
    """Validate that an option lies in [0, 1] (a usage error otherwise)."""
    if not (0.0 <= value <= 1.0):
        raise UsageError(f"{name} must be in [0, 1], got {value:g}")
    return value


def check_score_threshold(name: str, value: float) -> float:
    """Validate a score threshold: in [0, 1), since a face is kept when its score is *above* it."""
    if not (0.0 <= value < 1.0):
        raise UsageError(f"{name} must be in [0, 1) (a face is reported when its score is above it), got {value:g}")
    return value
