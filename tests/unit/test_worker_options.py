"""`orchestra worker`'s options for isolation: --sandbox, the sandbox property (the worker's
own), and the token (--token-file, --token -, the warning for --token, and the command line
it starts again with, the token on a pipe)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestra.cli import worker_token
from orchestra.cli.worker_token import _without_token, read_token
from orchestra.errors import InvalidInput


def orchestra_worker(
    *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestra", "worker", "--url", "http://127.0.0.1:9", *arguments],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **(env or {})},
        timeout=60,
    )


def test_the_token_comes_from_a_file_standard_input_an_option_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    private = tmp_path / "token"
    private.write_text("orc_from_file\n")
    private.chmod(0o600)
    assert read_token(None, private, {}) == ("orc_from_file", False)
    assert capsys.readouterr().err == ""
    private.chmod(0o644)
    assert read_token(None, private, {}) == ("orc_from_file", False)
    assert "chmod 600" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("orc_from_stdin\n"))
    assert read_token("-", None, {}) == ("orc_from_stdin", False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("orc_from_stdin\n"))
    assert read_token(None, Path("-"), {}) == ("orc_from_stdin", False)
    assert read_token("orc_shown", None, {}) == ("orc_shown", True)
    assert read_token(None, None, {"ORCHESTRA_TOKEN": "orc_env"}) == ("orc_env", True)
    assert read_token(None, None, {}) == (None, False)


def test_a_token_from_a_descriptor_is_read_and_the_descriptor_closed() -> None:
    read, write = os.pipe()
    os.write(write, b"orc_piped\n")
    os.close(write)
    assert read_token(None, Path(f"/dev/fd/{read}"), {}) == ("orc_piped", False)
    with pytest.raises(OSError):
        os.fstat(read)


def test_bad_token_sources_are_refused_with_a_reason(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for token, token_file, match in (
        ("a", tmp_path, "not both"),
        (None, empty, "alone, on one line"),
        (None, tmp_path / "missing", "cannot read the token file"),
        ("two\nlines", None, "alone, on one line"),
    ):
        with pytest.raises(InvalidInput, match=match):
            read_token(token, token_file, {})


def test_the_command_line_started_again_has_no_token() -> None:
    arguments = [
        "--url",
        "u",
        "--token",
        "orc_x",
        "--user",
        "w",
        "--token=orc_y",
        "--executors",
        "2",
    ]
    assert _without_token(arguments) == ["--url", "u", "--user", "w", "--executors", "2"]


def test_a_process_that_is_not_orchestra_worker_is_not_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-m", "pytest"])
    worker_token.without_token_in_sight("orc_x")  # returns: nothing to start again


def test_the_worker_refuses_bad_isolation_options_with_one_line(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("orc_x\n")
    token.chmod(0o600)
    common = ["--user", "w", "--token-file", str(token), "--data-dir", str(tmp_path / "d")]
    for arguments, said in (
        (["--sandbox", "sometimes"], "--sandbox must be one of auto, always, never"),
        (["--property", "sandbox=true"], "the sandbox property is the worker's own"),
        (["--token", "orc_y"], "give --token or --token-file, not both"),
    ):
        done = orchestra_worker(*common, *arguments)
        assert done.returncode == 1, done
        assert said in done.stderr.splitlines()[-1], done.stderr
        assert "Traceback" not in done.stderr


def test_a_token_on_the_command_line_is_warned_about() -> None:
    done = orchestra_worker("--user", "w", "--token", "orc_y", "--sandbox", "sometimes")
    assert "warning: --token shows the token to every user of this machine (ps)" in done.stderr
    assert done.returncode == 1
