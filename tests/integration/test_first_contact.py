"""A new user's first minutes: set-up without a system package, the help and the README, a
misspelled setting, a file of garbage, a port already taken, the package as pip builds it."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

from kpistream.cli import parser
from kpistream.runtime import free_port

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
KPISTREAM = [sys.executable, "-m", "kpistream"]


def _run(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """A command as a user runs it from a shell: this environment without its ``KPISTREAM_*``
    and without what an enclosing ``make`` (the suite runs under ``make test``) passes down,
    which would make a child ``make`` print its directory; plus ``env``."""
    inherited = (
        "MAKELEVEL",
        "MAKEFLAGS",
        "MFLAGS",
        "MAKEOVERRIDES",
        "MAKE_TERMOUT",
        "MAKE_TERMERR",
    )
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("KPISTREAM_") and k not in inherited
    }
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**base, **(env or {})},
        cwd=cwd,
    )


def test_make_without_the_venv_module_says_what_to_install(tmp_path: Path) -> None:
    """A Python whose venv module is missing (Debian without python3-venv): one line naming
    the package, not a traceback."""
    fake = tmp_path / "python3"
    fake.write_text(
        "#!/bin/sh\n"
        # the venv module's check fails, as it does without python3-venv; all else is Python
        f'case "$*" in *ensurepip*) exit 1;; esac\nexec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    made = _run(["make", "venv", f"PYTHON={fake}", f"VENV={tmp_path / 'v'}"], cwd=ROOT)
    assert made.returncode != 0
    assert made.stdout.strip().splitlines() == [
        "make: the Python venv module is missing: sudo apt-get install python3-venv "
        "(Debian, Ubuntu)"
    ], made.stdout + made.stderr
    assert "Traceback" not in made.stdout + made.stderr
    assert not (tmp_path / "v" / "bin" / "python").exists()


def test_the_readme_says_which_tests_skip_without_which_binary() -> None:
    needed = set()
    for path in (ROOT / "tests").rglob("*.py"):
        needed |= set(re.findall(r'require_binary\("([\w-]+)", "([\w-]+)"\)', path.read_text()))
    table = README.split("`make\ntest` ends with the list of skips", 1)[1].split("\n\n", 2)[1]
    for binary, package in needed:
        row = next((line for line in table.splitlines() if f"`{binary}`" in line), None)
        assert row is not None and f"`{package}`" in row, (binary, package)
    recipe = (ROOT / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "pytest -q -rs" in recipe  # the skip summary, with reasons


def test_every_command_is_in_the_readme_and_every_option_says_its_default() -> None:
    root = parser()
    commands = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    section = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `kpistream (\w+)", section, flags=re.MULTILINE))
    assert documented == set(commands.choices)
    for name, command in commands.choices.items():
        text = command.format_help()
        for action in command._actions:
            if not action.option_strings or action.help == "show this help message and exit":
                continue
            if action.required:
                continue
            help_text = command._get_formatter()._get_help_string(action) % {
                "default": action.default
            }
            assert "default" in help_text, (name, action.option_strings, help_text)
            assert help_text.split("(default")[0].strip()[:20] in " ".join(text.split())
    version = _run([*KPISTREAM, "--version"])
    assert version.returncode == 0 and re.fullmatch(r"kpistream \S+\n", version.stdout)


def test_a_misspelled_setting_gets_one_line_naming_the_closest(tmp_path: Path) -> None:
    port = free_port()
    result = _run(
        [*KPISTREAM, "labels", "--redis", f"redis://127.0.0.1:{port}/0"],
        env={"KPISTREAM_REDDIS": "redis://elsewhere:6379/0", "KPISTREAM_STATE_DIR": str(tmp_path)},
    )
    lines = result.stderr.strip().splitlines()
    assert lines[0] == (
        "kpistream: warning: KPISTREAM_REDDIS is not a setting and is ignored; "
        "did you mean KPISTREAM_REDIS?"
    ), result.stderr
    assert len(lines) == 2 and lines[1].startswith("kpistream: error: cannot reach Redis")


def test_produce_says_what_a_file_held_and_fails_when_nothing_was_valid(
    tmp_path: Path, broker: str
) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"hello": 1}\nnot json at all\n{"type": "teleport"}\n')
    env = {"KPISTREAM_KAFKA": broker, "KPISTREAM_STATE_DIR": str(tmp_path), "KPISTREAM_REDIS": ""}
    env["KPISTREAM_CLICKSTREAM_TOPIC"] = f"garbage-{free_port()}"
    result = _run([*KPISTREAM, "produce", str(garbage)], env=env)
    assert result.returncode == 2, result.stderr
    assert (
        "kpistream: produce: 0 valid, 3 invalid (malformed_json 1, missing_field 1, "
        "unknown_type 1; the workers dead-letter them with their reason)"
    ) in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"kpistream: error: no valid event in {garbage}: see docs/events.md for the event contract"
    )
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(
        '{"event_id": "e1", "type": "page_view", "ts": 1764000000000, "site": "s", '
        '"visitor_id": "v", "path": "/"}\nnot json\n'
    )
    result = _run([*KPISTREAM, "produce", str(mixed)], env=env)
    assert result.returncode == 0, result.stderr
    assert "kpistream: produce: 1 valid, 1 invalid (malformed_json 1;" in result.stderr


def test_a_port_in_use_is_one_line_naming_the_setting(tmp_path: Path, redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"KPISTREAM_STATE_DIR": str(tmp_path), "KPISTREAM_STARTUP_TIMEOUT_S": "0"}
        for args, setting in (
            (["exporter", "--redis", redis_url, "--port", str(port)], "KPISTREAM_METRICS_PORT"),
            (["collector", "--port", str(port)], "KPISTREAM_COLLECTOR_PORT"),
            (["up", "--metrics-port", str(port)], "--metrics-port"),
        ):
            result = _run([*KPISTREAM, *args], env=env)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1, result.stderr
            assert f"port {port} on 127.0.0.1 is in use" in lines[0] and setting in lines[0]


def test_the_wheel_holds_its_data_and_runs_from_a_fresh_venv(tmp_path: Path) -> None:
    """Built from a clean clone, without a warning of undeclared packages; installed alone
    into a new virtualenv (its dependencies seen through the project's): `kpistream
    --version` and the collector's script route work."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-w",
            str(tmp_path / "dist"),
            str(clone),
        ]
    )
    assert built.returncode == 0, built.stderr
    assert "is absent from the `packages` configuration" not in built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("kpistream-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in (
        "kpistream/collector/static/kpistream.js",
        "kpistream/collector/shop/package-lock.json",
        "kpistream/schemas/v1/clickstream.schema.json",
        "kpistream/sinks/commit.lua",
    ):
        assert data in names, data
    assert not any("node_modules" in name for name in names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = next(p for p in sys.path if p.endswith("site-packages"))
    (site / "project-deps.pth").write_text(deps + "\n")  # after the venv's own: kpistream
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    version = _run([str(python), "-m", "kpistream", "--version"], cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("kpistream "), version.stderr
    route = _run(
        [
            str(python),
            "-c",
            "import kpistream\n"
            "assert 'site-packages' in kpistream.__file__, kpistream.__file__\n"
            "from starlette.testclient import TestClient\n"
            "from kpistream.collector.routes import create_app\n"
            "from kpistream.config.settings import load\n"
            "r = TestClient(create_app(load({}, env={}))).get('/kpistream.js')\n"
            "assert r.status_code == 200 and 'data-site' in r.text, r.status_code\n",
        ],
        cwd=tmp_path,
    )
    assert route.returncode == 0, route.stderr
    assert shutil.which("git")
