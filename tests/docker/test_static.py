"""Static checks of the container files, always run (offline, no container engine): hadolint and
shellcheck, the compose files against the compose spec, and what the Dockerfiles must say."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from service.metrics import ServiceMetrics
from tests.live_server import REPO

DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile*"))
SERVICE_IMAGES = [REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.gpu"]
COMPOSE_SETS = [
    ["docker-compose.yml"],
    ["docker-compose.yml", "docker-compose.gpu.yml"],
    ["docker-compose.yml", "docker-compose.replicas.yml"],
]


def tool(name: str) -> str:
    """A linter installed with the dev extra, beside this Python."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is missing: install the project's dev extra"
    return found


def stages(path: Path) -> list[list[dict[str, str]]]:
    """The Dockerfile's instructions, one list per stage (FROM starts a stage)."""
    with path.open("rb") as f:
        structure = DockerfileParser(fileobj=f).structure
    out: list[list[dict[str, str]]] = []
    for instruction in structure:
        if instruction["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(instruction)
    return out


def test_there_are_the_three_images() -> None:
    assert [p.name for p in DOCKERFILES] == ["Dockerfile", "Dockerfile.gpu", "Dockerfile.train"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    run = subprocess.run([tool("hadolint"), str(dockerfile)], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_shellcheck_on_the_entrypoints() -> None:
    scripts = sorted((REPO / "docker").glob("*.sh"))
    assert scripts
    run = subprocess.run([tool("shellcheck"), *map(str, scripts)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("files", COMPOSE_SETS, ids=lambda f: "+".join(f))
def test_compose_files_follow_the_compose_spec(files: list[str]) -> None:
    args = [tool("docker-compose")]
    for f in files:
        args += ["-f", f]
    run = subprocess.run([*args, "config", "-q"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    profiles = subprocess.run(
        [*args, "--profile", "train", "config", "-q"], cwd=REPO, capture_output=True, text=True
    )
    assert profiles.returncode == 0, profiles.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_as_a_non_root_user(dockerfile: Path) -> None:
    runtime = stages(dockerfile)[-1]
    users = [i["value"].split(":")[0] for i in runtime if i["instruction"] == "USER"]
    assert users and users[-1] not in ("root", "0"), (
        f"{dockerfile.name}: the last stage must end as a non-root USER"
    )


@pytest.mark.parametrize("dockerfile", SERVICE_IMAGES, ids=lambda p: p.name)
def test_service_images_are_multi_stage_without_torch_or_build_tools(dockerfile: Path) -> None:
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2, "build and runtime stages"
    runtime = all_stages[-1]
    text = "\n".join(i["content"] for i in runtime).lower()
    assert "torch" not in text
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|git)\b", text)
    assert "pip install" not in text  # the runtime stage copies the built environment, installs nothing
    copied = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert any(c.startswith("--from=build /opt/venv") for c in copied)
    # What gets installed is the serve (or gpu) extra, never train
    installs = "\n".join(i["content"] for stage in all_stages for i in stage if "pip install" in i["content"])
    assert re.search(r"\[(serve|gpu)\]", installs) and "train" not in installs and "torch" not in installs
    instructions = {i["instruction"] for i in runtime}
    assert {"HEALTHCHECK", "EXPOSE", "ENTRYPOINT", "STOPSIGNAL"} <= instructions
    assert any(i["instruction"] == "HEALTHCHECK" and "service.healthcheck" in i["value"] for i in runtime)


def test_the_serve_extra_does_not_pull_torch() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("serve", "gpu", "client"):
        assert not any(dep.lower().startswith("torch") for dep in extras[extra]), extra


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for heavy in (".git", ".venv", "runs"):
        assert heavy in ignored
    for needed in (
        "models",
        "contract",
        "service",
        "model_repository",
        "model_export",
        "pyproject.toml",
        "README.md",
        "configs",
    ):
        assert needed not in ignored


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_package_is_copied_for_the_install(dockerfile: Path) -> None:
    """pip installs what it finds: a package left out would be missing from the image (its
    console scripts start in gan_cli, for one)."""
    import tomllib

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*") for pattern in include["include"]}
    build = stages(dockerfile)[0]
    copied = {i["value"].split()[0] for i in build if i["instruction"] == "COPY"}
    assert packages <= copied, f"{dockerfile.name} does not copy {sorted(packages - copied)}"


def promql_metrics(expr: str) -> set[str]:
    return {m for m in re.findall(r"\b(gan_[a-z_]+)", expr)}


def test_the_dashboard_and_prometheus_use_metrics_the_service_exports() -> None:
    exported: set[str] = set()
    for family in ServiceMetrics().registry.collect():
        exported |= {sample.name for sample in family.samples} | {family.name}
    # histogram series exist once observed; their names follow from the family
    exported |= {f"{n}_{s}" for n in exported for s in ("bucket", "sum", "count", "total")}
    dashboard = json.loads((REPO / "docker" / "grafana" / "dashboards" / "gan-serving.json").read_text())
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= promql_metrics(target["expr"])
    used |= promql_metrics(dashboard["templating"]["list"][0]["definition"])
    assert used and used <= exported, used - exported
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("requests per second", "latency", "queue depth", "batch size", "rejections"):
        assert topic in titles
    prometheus = yaml.safe_load((REPO / "docker" / "prometheus" / "prometheus.yml").read_text())
    job = prometheus["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["dns_sd_configs"][0]["names"] == ["gan"]
    datasource = yaml.safe_load((REPO / "docker/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"
