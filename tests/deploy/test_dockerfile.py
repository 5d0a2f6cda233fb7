"""deploy/Dockerfile cannot be built here (no Docker): check what it refers to exists and stays usable."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from tests.deploy.conftest import REPO

DOCKERFILE = REPO / "deploy/Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    ignore = [ln for ln in (REPO / "deploy/Dockerfile.dockerignore").read_text().splitlines()
              if ln and not ln.startswith("#")]
    copies = [args.split()[:-1] for op, args in instructions() if op == "COPY"]
    assert copies
    for sources in copies:
        for src in sources:
            assert (REPO / src).exists(), f"COPY {src}: no such path in the repository"
            # .dockerignore: last matching pattern wins; "!" re-includes
            included = True
            for pattern in ignore:
                neg = pattern.startswith("!")
                if fnmatch.fnmatch(src, pattern.lstrip("!").removesuffix("/**")) or pattern == "**":
                    included = neg
            assert included, f"COPY {src} is excluded by Dockerfile.dockerignore"


def test_the_package_installs_from_what_is_copied() -> None:
    copied = {s for op, args in instructions() if op == "COPY" for s in args.split()[:-1]}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["readme"] in copied and "pyproject.toml" in copied
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert set(packages) == {"vstream*", "workers*", "api*"}
    assert {"vstream", "workers", "api"} <= copied
    # the optional extras the build argument names exist
    assert "model" in project["project"]["optional-dependencies"]


def test_entrypoint_is_the_cli_and_user_is_not_root() -> None:
    ops = instructions()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert dict(ops)["ENTRYPOINT"] == '["vstream"]' and "vstream" in project["project"]["scripts"]
    user = [args for op, args in ops if op == "USER"][-1]
    assert user.split(":")[0] not in {"0", "root"}
    assert any(op == "FROM" and args.startswith("python:3.11") for op, args in ops)
    # the chart mounts writable volumes at these paths (readOnlyRootFilesystem)
    helpers = (REPO / "deploy/helm/vstream/templates/_helpers.tpl").read_text()
    env = " ".join(args for op, args in ops if op == "ENV")
    cache = re.search(r"VSTREAM_CACHE=(\S+)", env)
    assert cache and f"mountPath: {cache.group(1)}" in helpers
    workdir = [args for op, args in ops if op == "WORKDIR"][-1]
    assert f"mountPath: {workdir}/var" in helpers


def test_the_image_does_not_copy_tests_or_local_state() -> None:
    copied = {s for op, args in instructions() if op == "COPY" for s in args.split()[:-1]}
    assert not copied & {".", "tests", "var", "deploy"}
    assert all(Path(s).parts[0] not in {"tests", "var", ".git"} for s in copied)
