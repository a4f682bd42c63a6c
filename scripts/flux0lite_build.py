"""flux0lite's own PEP 517 build backend: standard library only, so that

    pip install --no-index .          pip wheel --no-index .

work on a machine with no package index and no setuptools/wheel (pip's build isolation installs
nothing, because pyproject.toml's build-system requires nothing). It also lists the files that make
up the packages for ``scripts/build-pyz``, so a wheel and a .pyz always hold the same modules.

Metadata comes from pyproject.toml's [project] table (the version from flux0lite/_version.py);
which folder holds which package comes from [tool.flux0lite-build]. Anything in [project] this
backend cannot render is an error, never silently dropped. Archives are reproducible: sorted
entries, fixed timestamps (SOURCE_DATE_EPOCH if set, else 1980-01-01) and fixed permissions.
"""

from __future__ import annotations

import ast
import base64
import csv
import gzip
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

__all__ = [
    "BuildError",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "package_files",
    "parse_toml",
    "prepare_metadata_for_build_wheel",
    "project_metadata",
    "write_zip",
]

_PACKAGE_SUFFIXES = (".py", ".pyi")
_PACKAGE_DATA = ("py.typed",)
_SKIPPED_DIRS = ("__pycache__", "tests", "test")
_KNOWN_PROJECT_KEYS = {
    "name",
    "version",
    "dynamic",
    "description",
    "readme",
    "requires-python",
    "license",
    "dependencies",
    "optional-dependencies",
    "classifiers",
    "keywords",
    "urls",
    "scripts",
}


class BuildError(Exception):
    """The project cannot be built as configured (the message says why)."""


# --- a strict reader for the TOML that pyproject.toml uses --------------------------------------
# tomllib only exists from Python 3.11; pip on 3.9/3.10 must still build offline. Anything outside
# the subset below (multi-line strings, dates, arrays of tables) is an error, never a guess.

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_NUMBER = re.compile(r"[+-]?[0-9][0-9_]*(\.[0-9_]+)?([eE][+-]?[0-9_]+)?")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class _TomlReader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> BuildError:
        line = self.text.count("\n", 0, self.pos) + 1
        return BuildError(f"pyproject.toml line {line}: {what}")

    def peek(self, size: int = 1) -> str:
        return self.text[self.pos : self.pos + size]

    def skip_blank(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self.pos += 1
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def expect(self, token: str) -> None:
        if self.peek(len(token)) != token:
            raise self.fail(f"expected {token!r}")
        self.pos += len(token)

    def end_of_line(self) -> None:
        self.skip_blank(newlines=False)
        if self.pos < len(self.text) and self.peek() not in "\r\n":
            raise self.fail("expected the end of the line")

    def key_path(self) -> List[str]:
        parts = [self.key()]
        self.skip_blank(newlines=False)
        while self.peek() == ".":
            self.pos += 1
            self.skip_blank(newlines=False)
            parts.append(self.key())
            self.skip_blank(newlines=False)
        return parts

    def key(self) -> str:
        if self.peek() in ('"', "'"):
            return self.string()
        match = _BARE_KEY.match(self.text, self.pos)
        if not match:
            raise self.fail("expected a key")
        self.pos = match.end()
        return match.group()

    def string(self) -> str:
        quote = self.peek()
        if self.peek(3) == quote * 3:
            raise self.fail("multi-line strings are not supported by the in-tree build backend")
        self.pos += 1
        out: List[str] = []
        while True:
            char = self.peek()
            if char in ("", "\n"):
                raise self.fail("unterminated string")
            self.pos += 1
            if char == quote:
                return "".join(out)
            if char == "\\" and quote == '"':
                code = self.peek()
                self.pos += 1
                if code in _ESCAPES:
                    out.append(_ESCAPES[code])
                elif code in ("u", "U"):
                    size = 4 if code == "u" else 8
                    digits = self.peek(size)
                    if not re.fullmatch(r"[0-9A-Fa-f]{%d}" % size, digits):
                        raise self.fail("bad unicode escape")
                    self.pos += size
                    out.append(chr(int(digits, 16)))
                else:
                    raise self.fail(f"unknown escape \\{code}")
            else:
                out.append(char)

    def value(self) -> Any:
        char = self.peek()
        if char in ('"', "'"):
            return self.string()
        if char == "[":
            return self.array()
        if char == "{":
            return self.inline_table()
        for word, result in (("true", True), ("false", False)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return result
        match = _NUMBER.match(self.text, self.pos)
        if match and not re.match(r"[-:T]", self.text[match.end() : match.end() + 1]):
            self.pos = match.end()
            number = match.group().replace("_", "")
            return float(number) if match.group(1) or match.group(2) else int(number)
        raise self.fail(
            "unsupported value (the in-tree build backend reads strings, numbers, booleans, arrays, tables)"
        )

    def array(self) -> List[Any]:
        self.expect("[")
        items: List[Any] = []
        while True:
            self.skip_blank(newlines=True)
            if self.peek() == "]":
                self.pos += 1
                return items
            items.append(self.value())
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "]":
                raise self.fail("expected ',' or ']'")

    def inline_table(self) -> Dict[str, Any]:
        self.expect("{")
        table: Dict[str, Any] = {}
        self.skip_blank(newlines=False)
        if self.peek() == "}":
            self.pos += 1
            return table
        while True:
            self.skip_blank(newlines=False)
            self.assign(table)
            self.skip_blank(newlines=False)
            if self.peek() == "}":
                self.pos += 1
                return table
            self.expect(",")

    def assign(self, table: Dict[str, Any]) -> None:
        path = self.key_path()
        self.expect("=")
        self.skip_blank(newlines=False)
        target = self.descend(table, path[:-1])
        if path[-1] in target:
            raise self.fail(f"duplicate key {'.'.join(path)}")
        target[path[-1]] = self.value()

    def descend(self, table: Dict[str, Any], path: List[str]) -> Dict[str, Any]:
        for part in path:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise self.fail(f"{part} is not a table")
        return table

    def document(self) -> Dict[str, Any]:
        root: Dict[str, Any] = {}
        current = root
        seen: Set[Tuple[str, ...]] = set()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return root
            if self.peek(2) == "[[":
                raise self.fail("arrays of tables are not supported by the in-tree build backend")
            if self.peek() == "[":
                self.pos += 1
                self.skip_blank(newlines=False)
                path = self.key_path()
                self.expect("]")
                if tuple(path) in seen:
                    raise self.fail(f"table [{'.'.join(path)}] defined twice")
                seen.add(tuple(path))
                current = self.descend(root, path)
            else:
                self.assign(current)
            self.end_of_line()


def parse_toml(text: str) -> Dict[str, Any]:
    """Read the TOML subset pyproject.toml uses; raise BuildError on anything else."""
    return _TomlReader(text).document()


# --- what to build ---------------------------------------------------------------------------


def _pyproject(root: Path) -> Dict[str, Any]:
    try:
        return parse_toml((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"cannot read {root / 'pyproject.toml'}: {exc}") from exc


def _package_dirs(root: Path) -> Dict[str, Path]:
    config = _pyproject(root).get("tool", {}).get("flux0lite-build", {})
    packages = config.get("packages")
    if not isinstance(packages, dict) or not packages:
        raise BuildError("pyproject.toml needs [tool.flux0lite-build] packages = { name = 'folder', ... }")
    dirs = {}
    for name, folder in sorted(packages.items()):
        path = root / str(folder)
        if not (path / "__init__.py").is_file():
            raise BuildError(f"package {name}: {path} has no __init__.py")
        dirs[name] = path
    return dirs


def package_files(root: Path) -> List[Tuple[str, Path]]:
    """(name inside an archive, file) for every module and py.typed of the packages, sorted.

    Subpackages (folders with an __init__.py) are included; __pycache__, tests and anything
    that is not a module or py.typed are left out. A symlink is refused rather than followed
    out of the tree.
    """
    files: List[Tuple[str, Path]] = []
    for name, top in _package_dirs(root).items():
        for folder, subdirs, names in os.walk(top):
            here = Path(folder)
            subdirs[:] = sorted(d for d in subdirs if d not in _SKIPPED_DIRS and (here / d / "__init__.py").is_file())
            for file_name in sorted(names):
                path = here / file_name
                if not (file_name.endswith(_PACKAGE_SUFFIXES) or file_name in _PACKAGE_DATA):
                    continue
                if path.is_symlink():
                    raise BuildError(f"{path} is a symlink; the build copies regular files only")
                files.append(((Path(name) / path.relative_to(top)).as_posix(), path))
    return sorted(files)


def _version(root: Path) -> str:
    source = root / "flux0lite" / "_version.py"
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            and re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", node.value.value)
        ):
            return node.value.value
    raise BuildError(f"{source} has no __version__ = '<version>'")


def _header(name: str, value: object) -> str:
    text = str(value)
    if "\n" in text or "\r" in text:
        raise BuildError(f"metadata field {name} must be one line")
    return f"{name}: {text}\n"


def project_metadata(root: Path) -> Tuple[str, str, str]:
    """(name, version, METADATA text) from [project]; the version from flux0lite/_version.py."""
    project = _pyproject(root).get("project")
    if not isinstance(project, dict) or "name" not in project:
        raise BuildError("pyproject.toml has no [project] name")
    unknown = sorted(set(project) - _KNOWN_PROJECT_KEYS)
    if unknown:
        raise BuildError(f"[project] keys the in-tree build backend cannot render: {', '.join(unknown)}")
    if "version" in project or project.get("dynamic") != ["version"]:
        raise BuildError("[project] must have dynamic = ['version'] (it lives in flux0lite/_version.py)")
    name, version = str(project["name"]), _version(root)
    lines = ["Metadata-Version: 2.1\n", _header("Name", name), _header("Version", version)]
    if "description" in project:
        lines.append(_header("Summary", project["description"]))
    if "keywords" in project:
        lines.append(_header("Keywords", ",".join(project["keywords"])))
    license_ = project.get("license")
    if isinstance(license_, dict) and "text" in license_:
        lines.append(_header("License", license_["text"]))
    elif license_ is not None:
        raise BuildError("[project] license must be { text = '...' }")
    if "requires-python" in project:
        lines.append(_header("Requires-Python", project["requires-python"]))
    for label, url in project.get("urls", {}).items():
        lines.append(_header("Project-URL", f"{label}, {url}"))
    lines += [_header("Classifier", c) for c in project.get("classifiers", [])]
    lines += [_header("Requires-Dist", d) for d in project.get("dependencies", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lines.append(_header("Provides-Extra", extra))
        lines += [_header("Requires-Dist", f'{r}; extra == "{extra}"') for r in requirements]
    readme = project.get("readme")
    body = ""
    if readme is not None:
        if not isinstance(readme, str):
            raise BuildError("[project] readme must be a file name")
        kind = "text/markdown" if readme.lower().endswith(".md") else "text/plain"
        lines.append(_header("Description-Content-Type", kind))
        body = "\n" + (root / readme).read_text(encoding="utf-8")
    return name, version, "".join(lines) + body


def _entry_points(root: Path) -> str:
    scripts = _pyproject(root)["project"].get("scripts", {})
    if not scripts:
        return ""
    lines = ["[console_scripts]\n"] + [f"{name} = {target}\n" for name, target in sorted(scripts.items())]
    return "".join(lines)


# --- reproducible archives -------------------------------------------------------------------


def _epoch() -> int:
    # zip cannot store dates before 1980; SOURCE_DATE_EPOCH is the reproducible-builds convention
    try:
        return max(int(os.environ.get("SOURCE_DATE_EPOCH") or 0), 315532800)
    except ValueError:
        raise BuildError("SOURCE_DATE_EPOCH must be an integer") from None


def write_zip(target: io.BufferedIOBase, entries: Iterable[Tuple[str, bytes]]) -> None:
    """Write entries into a zip in the order given, with fixed timestamps and permissions."""
    stamp = time.gmtime(_epoch())[:6]
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _dist_info(root: Path) -> Tuple[str, Dict[str, bytes]]:
    name, version, metadata = project_metadata(root)
    folder = f"{_normalized(name)}-{version}.dist-info"
    files = {
        "METADATA": metadata.encode("utf-8"),
        "WHEEL": b"Wheel-Version: 1.0\nGenerator: flux0lite_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    entry_points = _entry_points(root)
    if entry_points:
        files["entry_points.txt"] = entry_points.encode("utf-8")
    return folder, files


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


# --- the PEP 517 hooks ------------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings: Optional[Mapping[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[Mapping[str, Any]] = None) -> List[str]:
    return []


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Optional[Mapping[str, Any]] = None
) -> str:
    folder, files = _dist_info(Path.cwd())
    target = Path(metadata_directory) / folder
    target.mkdir(parents=True, exist_ok=True)
    for file_name, data in files.items():
        (target / file_name).write_bytes(data)
    return folder


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    root = Path.cwd()
    name, version, _ = project_metadata(root)
    folder, dist_files = _dist_info(root)
    entries = [(arcname, path.read_bytes()) for arcname, path in package_files(root)]
    entries += [(f"{folder}/{file_name}", data) for file_name, data in sorted(dist_files.items())]
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for arcname, data in entries:
        writer.writerow([arcname, _record_hash(data), len(data)])
    writer.writerow([f"{folder}/RECORD", "", ""])
    entries.append((f"{folder}/RECORD", record.getvalue().encode("utf-8")))
    wheel_name = f"{_normalized(name)}-{version}-py3-none-any.whl"
    Path(wheel_directory).mkdir(parents=True, exist_ok=True)
    with open(Path(wheel_directory) / wheel_name, "wb") as target:
        write_zip(target, entries)
    return wheel_name


def _sdist_sources(root: Path) -> List[Tuple[str, Path]]:
    config = _pyproject(root).get("tool", {}).get("flux0lite-build", {})
    extra = ["pyproject.toml", "scripts/flux0lite_build.py"] + list(config.get("sdist-include", []))
    package_root = {name: path.relative_to(root) for name, path in _package_dirs(root).items()}
    files = []
    for arcname, path in package_files(root):
        package, _, rest = arcname.partition("/")
        files.append(((package_root[package] / rest).as_posix(), path))
    for item in extra:
        path = root / item
        if path.is_dir():
            files += [(p.relative_to(root).as_posix(), p) for p in path.rglob("*") if p.is_file()]
        elif path.is_file():
            files.append((item, path))
        else:
            raise BuildError(f"sdist-include names {item}, which does not exist")
    return sorted(set(files))


def build_sdist(sdist_directory: str, config_settings: Optional[Mapping[str, Any]] = None) -> str:
    root = Path.cwd()
    name, version, metadata = project_metadata(root)
    base = f"{_normalized(name)}-{version}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        members = [("PKG-INFO", metadata.encode("utf-8"), 0o644)]
        for arcname, path in _sdist_sources(root):
            members.append((arcname, path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644))
        for arcname, data, mode in sorted(members):
            info = tarfile.TarInfo(f"{base}/{arcname}")
            info.size, info.mtime, info.mode = len(data), _epoch(), mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    sdist_name = f"{base}.tar.gz"
    Path(sdist_directory).mkdir(parents=True, exist_ok=True)
    with open(Path(sdist_directory) / sdist_name, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(buffer.getvalue())
    return sdist_name
