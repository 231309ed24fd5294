"""Which served model version a job uses: the one it names (`name@3`), the one it was started on
(recorded in its folder), or the model's default; a job then pins it on every request, so that a
job, resumed or not, never mixes versions."""

from __future__ import annotations

from typing import Any

from client.errors import ApiError, GanClientError
from client.runner import JobError


def split_ref(ref: str | None) -> tuple[str | None, int | None]:
    """'digits' -> ('digits', None); 'digits@3' -> ('digits', 3); None -> (None, None)."""
    if ref is None or "@" not in ref:
        return ref, None
    name, _, version = ref.partition("@")
    if not (version.isascii() and version.isdigit() and int(version) >= 1):
        raise JobError(f"--model {ref!r}: a version is a positive integer, as in {name}@3")
    return name, int(version)


def pinned(name: str, version: int) -> str:
    return f"{name}@{version}"


def served_version(
    models: list[dict[str, Any]], task: str, name: str | None, version: int | None
) -> dict[str, Any]:
    """The manifest of the loaded version a job uses: `version` of model `name` when given, else
    that model's default version (`name` None: the first model of the task by name, as the server
    picks). JobError, naming what is served, when there is none."""
    of_task = [m for m in models if m.get("task") == task]
    names = sorted({m["name"] for m in of_task})
    if not names:
        raise JobError(f"the server serves no {task} model")
    chosen = names[0] if name is None else name
    versions = sorted((m for m in of_task if m["name"] == chosen), key=lambda m: int(m["version"]))
    if not versions:
        raise JobError(f"unknown {task} model {chosen!r}; served: {', '.join(names)}")
    if version is None:
        # The default version (a server from before versions side by side lists one per model).
        return next((m for m in versions if m.get("default")), versions[-1])
    for m in versions:
        if int(m["version"]) == version:
            return m
    loaded = ", ".join(str(m["version"]) for m in versions)
    raise JobError(
        f"{chosen} version {version} is not served (loaded: {loaded}); an operator can load it "
        f"(POST /v1/models/{chosen}/load), or start a new job in another folder"
    )


def knows_versions(entry: dict[str, Any]) -> bool:
    """Does the server that listed this model take NAME@VERSION? (A server from before versions
    side by side lists no `default` and would refuse the @.)"""
    return "default" in entry


def version_gone(error: GanClientError, ref: str) -> str | None:
    """What to say when `error` means that the version a job pins (`ref`, NAME@VERSION) is no
    longer served, so nothing more can be made; None for any other error, or an unpinned ref."""
    name, version = split_ref(ref)
    if not (isinstance(error, ApiError) and error.status == 404 and error.code == "unknown_model"):
        return None
    if name is None or version is None:
        return None
    return (
        f"{name} version {version} is no longer served; an operator can load it "
        f"(POST /v1/models/{name}/load), or start a new job in another folder"
    )
