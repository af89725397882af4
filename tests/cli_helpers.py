"""Run the real ``idinvert`` entry point in-process and capture its output."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from idinvert.cli.main import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> CliResult:
    """Call ``main([...])`` like the console script does; returns exit code and output."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)
