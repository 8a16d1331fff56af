"""Running the facedet CLI in tests (typer's CliRunner) and reading its one-line messages."""

from __future__ import annotations

from typer.testing import CliRunner

from facedet.cli import app

runner = CliRunner()


def run(*args):
    """Invoke ``facedet ARGS``; a Python exception (a bug, not a SystemExit) fails the test."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def messages(result, kind: str = "error") -> list[str]:
    """The ``error: ...`` (or ``warning: ...``) lines on stderr."""
    return [line for line in result.stderr.replace("\r", "\n").splitlines() if line.startswith(f"{kind}:")]


def one_line_error(result, needle: str | None = None) -> list[str]:
    """The command failed with one-line errors (the last containing ``needle``); returns them."""
    errs = messages(result)
    assert errs, result.output
    assert result.exit_code != 0
    if needle is not None:
        assert needle in errs[-1], result.output
    return errs
