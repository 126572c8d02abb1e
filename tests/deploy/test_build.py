"""The build's inputs agree: every package the code imports is declared in pyproject.toml
(the runtime's by the project, the suite's and tools' by a dependency group), and the locks
(requirements/*.txt, `make lock`) pin every declared package at a release its floor allows,
the image's the same releases as the suite's."""

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from importlib.metadata import packages_distributions, version
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import taskfleet

ROOT = Path(__file__).parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Where the image's code lives, and what only the suite and the tools run.
RUNTIME_SOURCES = ("shared", "cli", "services")
DEV_SOURCES = ("tests", "bench")
FIRST_PARTY = {*PYPROJECT["tool"]["importlinter"]["root_packages"], "tests"}
# The peers of `make bench-peers`, each with its own requirements-NAME.in and virtualenv.
PEERS = ROOT / "bench" / "peers"


def imported_modules(path: Path) -> Iterator[str]:
    """The top-level names of the absolute imports in one file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def undeclared(roots: list[Path], requirements: dict[str, Requirement]) -> dict[str, list[str]]:
    """Distribution (normalised name) -> the files under `roots` that import it, for each
    distribution imported that `requirements` does not declare."""
    distributions = packages_distributions()
    found: dict[str, set[str]] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if PEERS in path.parents:  # in virtualenvs of their own: see the test below
                continue
            for module in set(imported_modules(path)):
                if module in sys.stdlib_module_names or module in FIRST_PARTY:
                    continue
                if (path.parent / f"{module}.py").exists():  # a script's sibling (bench/)
                    continue
                if (ROOT / "bench" / f"{module}.py").exists():  # a test of a bench/ script
                    continue
                [dist, *_] = distributions.get(module) or [f"<no distribution: {module}>"]
                found.setdefault(canonicalize_name(dist), set()).add(path.name)
    return {dist: sorted(files) for dist, files in found.items() if dist not in requirements}


def group(name: str) -> list[str]:
    """A PEP 735 dependency group with the groups it includes, flattened."""
    requirements: list[str] = []
    for item in PYPROJECT["dependency-groups"][name]:
        requirements += group(item["include-group"]) if isinstance(item, dict) else [item]
    return requirements


def declared(requirements: list[str]) -> dict[str, Requirement]:
    parsed = (Requirement(line) for line in requirements)
    return {canonicalize_name(req.name): req for req in parsed}


RUNTIME = declared(PYPROJECT["project"]["dependencies"])
DEV = RUNTIME | declared(group("dev"))
BUILD = declared(PYPROJECT["build-system"]["requires"])


def pins(lock: str) -> dict[str, str]:
    """name -> version of every `name==version` a lock file pins."""
    text = (ROOT / "requirements" / lock).read_text()
    found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", text, re.MULTILINE)
    return {canonicalize_name(name): pinned for name, pinned in found}


def test_every_package_the_image_imports_is_a_dependency() -> None:
    assert undeclared([ROOT / root for root in RUNTIME_SOURCES], RUNTIME) == {}


def test_every_package_the_suite_and_tools_import_is_declared() -> None:
    assert undeclared([ROOT / root for root in DEV_SOURCES], DEV) == {}


def test_every_package_a_peer_of_the_benchmark_imports_is_in_its_own_requirements() -> None:
    found = {}
    for worker in sorted(PEERS.glob("*_worker.py")):
        name = worker.name.removesuffix("_worker.py")
        text = (PEERS / f"requirements-{name}.in").read_text()
        lines = (line.split("#")[0] for line in text.splitlines())
        pinned = {Requirement(line).name for line in lines if line.strip()}
        modules = set(imported_modules(worker)) - set(sys.stdlib_module_names)
        found[name] = {canonicalize_name(m) for m in modules} - {*map(canonicalize_name, pinned)}
    assert found == {"loop": set(), "dramatiq": set(), "celery": set()}


def test_the_scan_reports_an_undeclared_import(tmp_path: Path) -> None:
    (tmp_path / "sibling.py").write_text("")
    (tmp_path / "x.py").write_text(
        "import os, sibling\nimport yaml.loader\nfrom jwt import decode\nfrom . import y\n"
        "from taskfleet.core import jsonx\ndef f() -> None:\n    import PIL.Image\n"
    )
    assert undeclared([tmp_path], RUNTIME) == {"pyyaml": ["x.py"]}
    assert undeclared([tmp_path], {}) == {"pyjwt": ["x.py"], "pillow": ["x.py"], "pyyaml": ["x.py"]}


@pytest.mark.parametrize(
    ("lock", "requirements"), [("runtime.txt", RUNTIME), ("dev.txt", DEV), ("build.txt", BUILD)]
)
def test_the_lock_pins_every_declared_package_within_its_floor(
    lock: str, requirements: dict[str, Requirement]
) -> None:
    pinned = pins(lock)
    unlocked = sorted(name for name in requirements if name not in pinned)
    assert unlocked == [], "run `make lock`"
    refused = {
        name: f"{pinned[name]} not {req.specifier}"
        for name, req in requirements.items()
        if not req.specifier.contains(pinned[name], prereleases=True)
    }
    assert refused == {}, "run `make lock`"


def test_the_image_runs_the_releases_the_suite_tests() -> None:
    runtime, dev = pins("runtime.txt"), pins("dev.txt")
    assert not {"pytest", "ruff", "mypy"} & set(runtime), "the image locks no dev tool"
    assert {name: (v, dev.get(name)) for name, v in runtime.items() if dev.get(name) != v} == {}


def test_the_locks_hash_every_pin() -> None:
    for lock in ("runtime.txt", "dev.txt", "build.txt"):
        entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements" / lock).read_text())
        pinned = [entry for entry in entries if "==" in entry.split("\n", 1)[0]]
        assert len(pinned) == len(pins(lock))
        assert all("--hash=sha256:" in entry for entry in pinned)


def test_the_version_is_the_distributions() -> None:
    assert taskfleet.__version__ == PYPROJECT["project"]["version"] == version("taskfleet")


def test_the_built_package_carries_the_console_files(tmp_path: Path) -> None:
    """Built as the image builds it (deploy/Dockerfile: these sources, `pip install .`), the
    package holds every file of the console and /docs (pyproject's package-data)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("shared", "services", "cli"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("taskfleet-*.whl")
    static = ROOT / "services/api/fleet_api/static"
    files = {f"fleet_api/static/{p.relative_to(static)}" for p in static.rglob("*") if p.is_file()}
    assert "fleet_api/static/console/index.html" in files
    assert "fleet_api/static/vendor/swagger-ui/LICENSE" in files
    assert files <= set(zipfile.ZipFile(wheel).namelist())
