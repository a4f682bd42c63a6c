"""One file to copy and offline install, as a user on a locked-down machine would do them.

The three offline ways (copied folders on PYTHONPATH, the .pyz files, ``pip install --no-index``
of a wheel built beforehand) each run the command line against the real flux0 server. The build
steps run here too: ``scripts/build-pyz`` and the in-tree, standard-library-only build backend.
"""

from __future__ import annotations

import base64
import csv
import gc
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from flux0lite import Flux0, __version__
from tests.conftest import ROOT
from tests.integration.conftest import flux0_server  # noqa: F401  (the real server, shared with the integration tests)

sys.path.insert(0, str(ROOT / "scripts"))
import flux0lite_build
from flux0_server import Flux0Server, free_port

PIP_OFFLINE = ["--no-index", "--no-cache-dir", "--disable-pip-version-check"]
BIN = "Scripts" if os.name == "nt" else "bin"


def clean_env(**extra: str) -> Dict[str, str]:
    """The user's environment: nothing of ours on PYTHONPATH, no FLUX0_*, PIP_* or coverage settings.

    (scripts/test measures subprocesses through COVERAGE_PROCESS_START; code run from an archive,
    a copy or a venv here is not the tree's, so it is left out of the measurement.)
    """
    drop = ("FLUX0_", "PIP_", "COVERAGE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and k != "PYTHONPATH"}
    env.update(extra)
    return env


def run(args: List[str], cwd: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=timeout
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def pyz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pyz")
    built = run([sys.executable, ROOT / "scripts" / "build-pyz", "--out", out], cwd=out)
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once, by pip, with no index: the build backend needs nothing but the standard library."""
    out = tmp_path_factory.mktemp("wheel")
    built = run([sys.executable, "-m", "pip", "wheel", *PIP_OFFLINE, "--no-deps", "-w", out, ROOT], cwd=out)
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("*.whl")
    assert path.name == f"flux0lite-{__version__}-py3-none-any.whl"
    return path


@pytest.fixture(scope="module")
def offline_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("offline") / "venv"
    # without a pip of its own (ensurepip costs more CPU than the rest of the fixture): this
    # test's pip installs into it, offline all the same
    made = run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent, timeout=120)
    assert made.returncode == 0, made.stderr
    pip = [sys.executable, "-m", "pip", "--python", venv / BIN / "python"]
    installed = run([*pip, "install", *PIP_OFFLINE, wheel], cwd=venv.parent)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


@pytest.fixture(scope="module")
def session_with_events(flux0_server: Flux0Server) -> Iterator[Tuple[str, List[str]]]:  # noqa: F811
    with Flux0(flux0_server.url) as client:
        agent = client.agents.create(name="packaging", type="echo")
        session = client.sessions.create(agent_id=agent.id, title="offline install")
        assert client.sessions.create_event(session.id, "hello from a .pyz").reply().text
        yield session.id, [event.id for event in client.sessions.list_events(session.id)]


def assert_cli_exit_codes(command: List[object], url: str, cwd: Path, **env: str) -> None:
    """0 ok, 1 API error, 2 usage error, 3 connection error: the table in flux0lite/cli.py."""
    listed = run([*command, "--server-url", url, "agents", "list", "--json"], cwd, **env)
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    unknown = "0000000000"  # a well-formed agent id (flux0 answers 422 to a malformed one)
    missing = run([*command, "--server-url", url, "agents", "get", unknown], cwd, **env)
    assert missing.returncode == 1, missing.stderr
    assert "404" in missing.stderr
    bad_flag = run([*command, "--no-such-flag", "agents", "list"], cwd, **env)
    assert bad_flag.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in bad_flag.stderr
    dead_url = f"http://127.0.0.1:{free_port()}"
    dead = run([*command, "--server-url", dead_url, "--retries", "0", "agents", "list"], cwd, **env)
    assert dead.returncode == 3, dead.stderr
    assert "cannot connect" in dead.stderr


# --- one file to copy: the .pyz archives ------------------------------------------------------


def test_pyz_builds_are_reproducible_sorted_and_hold_only_the_packages(pyz_dir: Path, tmp_path: Path) -> None:
    again = run([sys.executable, ROOT / "scripts" / "build-pyz", "--out", tmp_path], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    sources = [name for name, _ in flux0lite_build.package_files(ROOT)]
    expected = {
        "flux0lite.pyz": [n for n in sources if n.startswith("flux0lite/")],
        "flux0-sync.pyz": sources,
    }
    for name, modules in expected.items():
        data = (pyz_dir / name).read_bytes()
        assert (tmp_path / name).read_bytes() == data, f"{name} differs between two builds"
        assert data.startswith(b"#!/usr/bin/env python3\n")
        assert os.access(pyz_dir / name, os.X_OK)
        with zipfile.ZipFile(pyz_dir / name) as archive:
            names = archive.namelist()
            assert names == sorted(names)
            assert names == sorted(["__main__.py", *modules])
            assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.integration
def test_flux0lite_pyz_exit_codes_against_the_real_server(
    pyz_dir: Path,
    flux0_server: Flux0Server,  # noqa: F811
    tmp_path: Path,
) -> None:
    # -I: no PYTHONPATH, no user site, no current directory; everything comes from the archive
    assert_cli_exit_codes([sys.executable, "-I", pyz_dir / "flux0lite.pyz"], flux0_server.url, tmp_path)


def test_pyz_runs_through_its_shebang(pyz_dir: Path, tmp_path: Path) -> None:
    # "/usr/bin/env python3" finds the python3 first on PATH: this test's interpreter
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    version = run([pyz_dir / "flux0lite.pyz", "--version"], tmp_path, PATH=path)
    assert (version.returncode, version.stdout.strip()) == (0, f"flux0lite {__version__}")
    sync_version = run([pyz_dir / "flux0-sync.pyz", "--version"], tmp_path, PATH=path)
    assert (sync_version.returncode, sync_version.stdout.strip()) == (0, f"flux0-sync {__version__}")
    usage = run([pyz_dir / "flux0lite.pyz", "agents", "get"], tmp_path, PATH=path)
    assert usage.returncode == 2


def test_pyz_on_a_too_old_python_says_so(pyz_dir: Path, tmp_path: Path) -> None:
    # Only 3.9+ exists here, so the archive's own check is shown a fake 3.8 version.
    code = (
        "import runpy, sys; sys.version_info = (3, 8, 10, 'final', 0); runpy.run_path(sys.argv[1], run_name='__main__')"
    )
    result = run([sys.executable, "-I", "-c", code, pyz_dir / "flux0lite.pyz", "--version"], tmp_path)
    assert result.returncode == 2
    assert result.stderr == "flux0lite: needs Python 3.9 or newer; this is Python 3.8\n"


@pytest.mark.integration
def test_flux0_sync_pyz_version_and_one_pass_into_an_archive(
    pyz_dir: Path,
    flux0_server: Flux0Server,  # noqa: F811
    session_with_events: Tuple[str, List[str]],
    tmp_path: Path,
) -> None:
    sync = [sys.executable, "-I", pyz_dir / "flux0-sync.pyz"]
    version = run([*sync, "--version"], tmp_path)
    assert (version.returncode, version.stdout.strip()) == (0, f"flux0-sync {__version__}")
    session_id, event_ids = session_with_events
    db = tmp_path / "archive.sqlite3"
    once = run([*sync, "--once", "--server-url", flux0_server.url, "--db", db, "--session", session_id], tmp_path)
    assert once.returncode == 0, once.stderr
    exported = run([*sync, "export", session_id, "--db", db], tmp_path)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(event_ids) >= 2  # the message and at least the agent's reply
    assert [event["id"] for event in lines] == event_ids


# --- offline way 1: copy the folders onto PYTHONPATH ------------------------------------------


@pytest.mark.integration
def test_copied_folders_run_from_pythonpath(flux0_server: Flux0Server, tmp_path: Path) -> None:  # noqa: F811
    vendor = tmp_path / "vendor"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "flux0lite", vendor / "flux0lite", ignore=skip)
    shutil.copytree(ROOT / "daemon" / "flux0sync", vendor / "flux0sync", ignore=skip)
    code = "import flux0lite, flux0sync; print(flux0lite.__file__); print(flux0sync.__file__)"
    where = run([sys.executable, "-c", code], tmp_path, PYTHONPATH=str(vendor))
    assert [Path(p).parent.parent for p in where.stdout.split()] == [vendor, vendor]
    assert_cli_exit_codes([sys.executable, "-m", "flux0lite"], flux0_server.url, tmp_path, PYTHONPATH=str(vendor))
    version = run([sys.executable, "-m", "flux0sync", "--version"], tmp_path, PYTHONPATH=str(vendor))
    assert (version.returncode, version.stdout.strip()) == (0, f"flux0-sync {__version__}")


# --- offline way 3: a wheel built beforehand, installed with pip --no-index -------------------


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_wheel_holds_every_module_and_an_exact_record(wheel: Path) -> None:
    dist_info = f"flux0lite-{__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        modules = [name for name, _ in flux0lite_build.package_files(ROOT)]
        assert names[: len(modules)] == modules
        assert {"flux0lite/py.typed", "flux0sync/py.typed", "flux0lite/cli.py", "flux0sync/cli.py"} <= set(names)
        assert not [n for n in names if "__pycache__" in n or n.startswith("tests/") or n.endswith(".pyc")]
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        headers = metadata.split("\n\n", 1)[0].splitlines()
        assert {"Name: flux0lite", f"Version: {__version__}", "Requires-Python: >=3.9"} <= set(headers)
        assert metadata.split("\n\n", 1)[1] == (ROOT / "README.md").read_text(encoding="utf-8")
        assert "Tag: py3-none-any" in archive.read(f"{dist_info}/WHEEL").decode().splitlines()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode().splitlines()
        assert entry_points == [
            "[console_scripts]",
            "flux0-sync = flux0sync.cli:main",
            "flux0lite = flux0lite.cli:main",
        ]
        rows = list(csv.reader(io.StringIO(archive.read(f"{dist_info}/RECORD").decode())))
        assert sorted(row[0] for row in rows) == sorted(names)
        for path, digest, size in rows:
            if path == f"{dist_info}/RECORD":
                assert (digest, size) == ("", "")
            else:
                data = archive.read(path)
                assert (digest, int(size)) == (record_hash(data), len(data)), path


@pytest.mark.integration
def test_offline_install_of_the_wheel_gives_both_commands_and_typing(
    offline_venv: Path,
    flux0_server: Flux0Server,  # noqa: F811
    tmp_path: Path,
) -> None:
    bin_dir = offline_venv / BIN
    version = run([bin_dir / "flux0lite", "--version"], tmp_path)
    assert (version.returncode, version.stdout.strip()) == (0, f"flux0lite {__version__}")
    sync_version = run([bin_dir / "flux0-sync", "--version"], tmp_path)
    assert (sync_version.returncode, sync_version.stdout.strip()) == (0, f"flux0-sync {__version__}")
    assert_cli_exit_codes([bin_dir / "flux0lite"], flux0_server.url, tmp_path)
    code = "import flux0lite, flux0sync; print(flux0lite.__file__); print(flux0sync.__file__)"
    where = run([bin_dir / "python", "-c", code], tmp_path)
    for init in map(Path, where.stdout.split()):
        assert "site-packages" in init.parts
        assert (init.parent / "py.typed").is_file()


def test_sdist_rebuilds_the_same_wheel_offline(wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # PEP 517 hooks run in the project folder
    sdist = tmp_path / flux0lite_build.build_sdist(str(tmp_path))
    rebuilt = run(
        [sys.executable, "-m", "pip", "wheel", *PIP_OFFLINE, "--no-deps", "-w", tmp_path / "out", sdist], tmp_path
    )
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert (tmp_path / "out" / wheel.name).read_bytes() == wheel.read_bytes()


# --- the build backend's own rules ------------------------------------------------------------


def copy_project(target: Path) -> Path:
    skip = shutil.ignore_patterns("__pycache__")
    for folder in ("flux0lite", "daemon/flux0sync"):
        shutil.copytree(ROOT / folder, target / folder, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, target / name)
    return target


def test_subpackages_go_in_while_caches_tests_and_stray_files_stay_out(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    for name, text in {
        "flux0lite/compat/__init__.py": "",
        "flux0lite/compat/proxy.py": "X = 1\n",
        "flux0lite/__pycache__/cli.cpython-313.pyc": "",
        "flux0lite/tests/__init__.py": "",
        "flux0lite/notes.txt": "",
        "flux0lite/not_a_package/mod.py": "",
    }.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    names = [name for name, _ in flux0lite_build.package_files(project)]
    assert {"flux0lite/compat/__init__.py", "flux0lite/compat/proxy.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or "/tests/" in n or "notes" in n or "not_a_package" in n]
    (project / "flux0lite" / "link.py").symlink_to(project / "flux0lite" / "cli.py")
    with pytest.raises(flux0lite_build.BuildError, match="symlink"):
        flux0lite_build.package_files(project)


def test_the_toml_reader_agrees_with_tomllib_on_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # 3.11+: the reader exists for 3.9 and 3.10
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert flux0lite_build.parse_toml(text) == tomllib.loads(text)


def test_the_toml_reader_reads_its_subset_and_refuses_the_rest() -> None:
    text = """
# comment
[a . "b.c"]
s = "tab\\t \\u00e9 \\"q\\"" # trailing
lit = 'C:\\path'
n = [1, 2_000, -3.5, 1e3, true, false,]
t = { x = "y", z.w = [ "p", # inside
  "q" ] }
dotted.key = 1
"""
    assert flux0lite_build.parse_toml(text) == {
        "a": {
            "b.c": {
                "s": 'tab\t \u00e9 "q"',
                "lit": "C:\\path",
                "n": [1, 2000, -3.5, 1000.0, True, False],
                "t": {"x": "y", "z": {"w": ["p", "q"]}},
                "dotted": {"key": 1},
            }
        }
    }
    for bad, why in [
        ('a = """x"""', "multi-line"),
        ("[[a]]", "arrays of tables"),
        ("a = 1\na = 2", "duplicate"),
        ("[a]\n[a]", "defined twice"),
        ("a = 1979-05-27", "unsupported value"),
        ("a = 1 b = 2", "end of the line"),
        ('a = "open', "unterminated"),
    ]:
        with pytest.raises(flux0lite_build.BuildError, match=why):
            flux0lite_build.parse_toml(bad)


def test_the_backend_refuses_metadata_it_cannot_write(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("[project]\n", '[project]\nauthors = ["x"]\n', 1))
    with pytest.raises(flux0lite_build.BuildError, match="authors"):
        flux0lite_build.project_metadata(project)


def test_main_modules_exit_with_the_command_line_code_skipping_the_last_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flux0sync.__main__

    import flux0lite.__main__

    for module, name in ((flux0lite.__main__, "flux0lite"), (flux0sync.__main__, "flux0-sync")):
        frozen = gc.get_freeze_count()
        monkeypatch.setattr(sys, "argv", [name, "--no-such-flag"])
        with pytest.raises(SystemExit) as exit_info:
            module.run()
        assert exit_info.value.code == 2
        # what the run made is out of the interpreter's last collection (skip_final_collection)
        assert gc.get_freeze_count() > frozen
