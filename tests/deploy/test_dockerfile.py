"""deploy/Dockerfile, read without building it: a slim, unprivileged, health-checked runtime
image that runs `taskfleet`, a build context that keeps what the image needs, and the locked
dependencies installed, by hash, in a layer of their own before the sources."""

import argparse
import json
import re
from collections.abc import Callable

from fleet_api.settings import ApiSettings
from taskfleet.core.constants import QUEUES
from tests.deploy.manifests import DEPLOY, SETTINGS

# Set by the Dockerfile for Python itself, not for taskfleet.
IMAGE_ENV = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), " ".join(args.split())))
    return stages


def test_the_image_is_slim_unprivileged_and_healthchecked(
    parse_command: Callable[[list[str]], argparse.Namespace],
) -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    final = stages[-1]
    build_args = dict(line.split("=", 1) for line in dockerfile_args())
    assert "slim" in build_args["PYTHON_IMAGE"]
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    # The runtime stage installs tini and nothing else: no compilers, no headers, no pip.
    run = " && ".join(args for instruction, args in final if instruction == "RUN")
    assert apt_packages(run) == {"tini"}
    assert "pip " not in run
    assert apt_packages(" && ".join(a for i, a in stages[0] if i == "RUN")) >= {"build-essential"}
    [(_, user)] = [line for line in final if line[0] == "USER"]
    assert user.split(":")[0] not in {"0", "root"}
    [(_, check)] = [line for line in final if line[0] == "HEALTHCHECK"]
    assert check.endswith('CMD ["python", "-m", "taskfleet.runtime.probe"]')
    [(_, entrypoint)] = [line for line in final if line[0] == "ENTRYPOINT"]
    assert json.loads(entrypoint)[-1] == "taskfleet"
    [(_, cmd)] = [line for line in final if line[0] == "CMD"]
    parse_command(json.loads(cmd))
    env_lines = [args for instruction, args in final if instruction == "ENV"]
    env = dict(pair.split("=", 1) for line in env_lines for pair in line.split())
    assert set(env) - IMAGE_ENV <= SETTINGS
    assert env["API_HOST"] == "0.0.0.0"
    [(_, exposed)] = [line for line in final if line[0] == "EXPOSE"]
    ports = {int(port) for port in exposed.split()}
    api_ports = {ApiSettings.model_fields[f].default for f in ("api_port", "api_metrics_port")}
    assert ports == api_ports | {spec.metrics_port for spec in QUEUES.values()}


def dockerfile_args() -> list[str]:
    """The ARG lines before the first FROM (the ones FROM lines may use)."""
    head = (DEPLOY / "Dockerfile").read_text().split("\nFROM ", 1)[0]
    return [line.removeprefix("ARG ").strip() for line in head.splitlines() if line[:4] == "ARG "]


def apt_packages(script: str) -> set[str]:
    """The packages of every `apt-get install` in a shell script."""
    packages = set()
    for command in script.split("&&"):
        words = command.split()
        if words[:2] == ["apt-get", "install"]:
            packages |= {word for word in words[2:] if not word.startswith("-")}
    return packages


def test_the_build_context_keeps_what_the_image_needs() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("**") :][:8] == [
        "**", "!requirements/runtime.txt", "!requirements/build.txt", "!pyproject.toml",
        "!README.md", "!shared/", "!services/", "!cli/",
    ]  # fmt: skip
    copied = {
        source
        for instruction, args in dockerfile_stages()[0]
        if instruction == "COPY"
        for source in args.split()[:-1]
    }
    assert copied == {
        "requirements/runtime.txt", "requirements/build.txt", "pyproject.toml", "README.md",
        "shared", "services", "cli",
    }  # fmt: skip


def test_the_image_installs_the_lock_before_the_sources() -> None:
    """The locked dependencies in a layer that a change to the sources does not rebuild, and
    nothing resolved beyond the lock: every pip install checks hashes or installs no deps."""
    steps = [(i, args) for i, args in dockerfile_stages()[0] if i in ("COPY", "RUN")]

    def first(instruction: str, *words: str) -> int:
        return next(
            n
            for n, (i, args) in enumerate(steps)
            if i == instruction and all(w in args.split() for w in words)
        )

    copy_lock = first("COPY", "requirements/runtime.txt")
    install_lock = first("RUN", "--require-hashes", "requirements/runtime.txt")
    copy_sources = min(first("COPY", source) for source in ("shared", "services", "cli"))
    install_project = first("RUN", "--no-deps", ".")
    assert copy_lock < install_lock < copy_sources < install_project
    assert [s for s in steps[:install_lock] if s[0] == "COPY"] == [steps[copy_lock]]
    commands = [command.split() for i, args in steps if i == "RUN" for command in args.split("&&")]
    pip_installs = [
        words
        for words in commands
        if [w.rsplit("/", 1)[-1] for w in words[:2]] == ["pip", "install"]
    ]
    assert len(pip_installs) == 2
    assert all({"--require-hashes", "--no-deps"} & set(words) for words in pip_installs)
    # The project is built with the locked setuptools, not one fetched for an isolated build.
    assert "requirements/build.txt" in pip_installs[0]
    assert "--no-build-isolation" in pip_installs[1]
