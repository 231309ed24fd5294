"""Whether the Python running this already has this project and the named extras installed: what
the Makefile asks before it runs pip, so a venv set up by hand (README: "Install by hand") is used
as it is. Exit 0 when it has them, 1 with one line per problem when not, 2 on a usage error.

    .venv/bin/python scripts/extras_installed.py train export serve client dev

"Installed" means: this checkout is installed in editable mode with the metadata pyproject.toml
gives it now (version, console scripts, the extras' requirements; else a reinstall is due) and its
packages import from here; and every requirement of the extras, and every requirement of those in
turn, is installed at a version that satisfies it (what pip itself would check). Needs `packaging`
(the serve and dev extras bring it in); without it the answer is "no", and pip runs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ModuleNotFoundError:  # a bare venv: too bare to have the extras, certainly
    print(f"extras_installed: {sys.prefix}: packaging is not installed", file=sys.stderr)
    sys.exit(1)

ROOT = Path(__file__).resolve().parents[1]


def requirement_problems(extras: list[str], declared: dict[str, list[str]]) -> list[str]:
    """Each requirement of the extras, and theirs in turn, that is missing or at a version that
    does not satisfy it."""
    problems: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()

    def check(requirement: Requirement, wanted_by: str) -> None:
        try:
            installed = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{requirement} (for {wanted_by}): not installed")
            return
        try:
            satisfied = requirement.specifier.contains(Version(installed.version), prereleases=True)
        except InvalidVersion:
            satisfied = False
        if not satisfied:
            problems.append(f"{requirement} (for {wanted_by}): {installed.version} is installed")
            return
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            return
        seen.add(key)
        for line in installed.requires or []:
            dependency = Requirement(line)
            # Its own requirements, and those of the extras asked of it (uvicorn[standard]).
            if dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra}) for extra in ("", *requirement.extras)
            ):
                check(dependency, installed.metadata["Name"])

    for extra in extras:
        for line in declared[extra]:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                check(requirement, f"the {extra} extra")
    return problems


def comparable(lines: list[str]) -> set[tuple[str, frozenset[str], str]]:
    """Requirements as names, extras and version specifiers: "a>=1,<2" and "a<2,>=1" are equal."""
    out: set[tuple[str, frozenset[str], str]] = set()
    for line in lines:
        r = Requirement(line)
        out.add((canonicalize_name(r.name), frozenset(r.extras), ",".join(sorted(map(str, r.specifier)))))
    return out


def project_problems(
    extras: list[str], project: dict[str, Any], packages: list[str], root: Path
) -> list[str]:
    """Why this checkout, as pyproject.toml describes it now, is not what is installed (editable)."""
    name = project["name"]
    try:
        installed = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return [f"{name}: not installed"]
    direct_url = json.loads(installed.read_text("direct_url.json") or "{}")
    url = urllib.parse.urlparse(direct_url.get("url", ""))
    # Paths compared, not URLs: the checkout may have been reached through a link.
    source = Path(urllib.parse.unquote(url.path)).resolve() if url.scheme == "file" else None
    if not direct_url.get("dir_info", {}).get("editable") or source != root:
        return [f"{name}: not installed in editable mode from {root} ({direct_url.get('url', 'no URL')})"]
    problems = []
    if installed.version != project["version"]:
        problems.append(
            f"{name}: version {installed.version} is installed, pyproject.toml says {project['version']}"
        )
    scripts = {e.name: e.value for e in installed.entry_points if e.group == "console_scripts"}
    if scripts != project.get("scripts", {}):
        problems.append(f"{name}: its installed console scripts are not those of pyproject.toml")
    metadata_lines = installed.requires or []
    for extra in extras:
        installed_lines = [
            line
            for line in metadata_lines
            if (marker := Requirement(line).marker) is not None
            and marker.evaluate({"extra": extra})
            and not marker.evaluate({"extra": ""})
        ]
        if comparable(installed_lines) != comparable(project["optional-dependencies"][extra]):
            problems.append(f"{name}: its installed requirements for {extra} are not those of pyproject.toml")
    for package in packages:
        spec = importlib.util.find_spec(package)
        places = [spec.origin] if spec is not None and spec.origin else []
        places += list(spec.submodule_search_locations or []) if spec is not None else []
        if not any(Path(place).resolve().is_relative_to(root) for place in places):
            problems.append(f"{name}: its package {package} does not import from {root}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("extras", nargs="+", help="extras of pyproject.toml")
    p.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml", help="default: this checkout's")
    args = p.parse_args(argv)
    pyproject = tomllib.loads(args.pyproject.read_text())
    project = pyproject["project"]
    unknown = sorted(set(args.extras) - set(project.get("optional-dependencies", {})))
    if unknown:
        p.error(f"no such extra in {args.pyproject}: {', '.join(unknown)}")
    # "training*" and the like: the top-level packages (the star takes in their subpackages).
    packages = [
        pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    try:
        problems = project_problems(args.extras, project, packages, args.pyproject.resolve().parent)
        problems += requirement_problems(args.extras, project["optional-dependencies"])
    except InvalidRequirement as e:  # in some installed package's metadata: let pip sort it out
        problems = [f"a requirement cannot be read: {e}"]
    for problem in problems:
        print(f"extras_installed: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"extras_installed: {sys.prefix} has {project['name']} and its {', '.join(args.extras)} extras")
    return 0


if __name__ == "__main__":
    sys.exit(main())
