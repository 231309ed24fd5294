"""A model version's interface: what a client of the model depends on, read from its manifest, and
how a new version's interface differs from the published ones.

A request that names a model without a version gets its newest version, so a new version that
draws other images (another resolution, other classes, no classes) breaks such clients without a
word. gan-export therefore compares the version it is about to publish with the newest published
version of the name and refuses a difference unless told (`--new-interface`); the service shows
each version's interface in GET /v1/models. Imports neither torch nor onnx.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_repository.manifest import ManifestError
from model_repository.repository import RepositoryError, list_versions, read_version

NEW_INTERFACE_FLAG = "--new-interface"

# Every field an interface may have, in the order a difference is reported. What is left out, and
# why: precision, opset and the files (the graphs' pixels in and out are uint8 whatever the
# precision); value_range (inside the graph: clients always get 0-255 pixels); the latent
# distribution (the schema allows only a standard normal); an upscaler's receptive radius, tile and
# overlap (how the server tiles, not what it answers); a style model's w_avg and noise shapes (what
# the server computes with, fixed by the fields kept); source, metrics, parity and tools. The
# graphs' inputs and outputs follow from the fields kept (labels when there are classes, z's length,
# the image's shape, a style model's ws and noise inputs), so they are not compared again: one change
# would be named twice.
FIELDS = (
    "task",
    "classes",  # 0: unconditional; a conditional model's requests carry labels
    "class_names",  # what the API accepts as labels besides indices
    "channels",
    "resolution",  # a generator's [height, width]
    "latent_size",  # z's length: a seed's latent, and so its image, depends on it
    "scale",
    # An upscaler's family and role decide which requests it answers: `detail` blends a family's
    # faithful and detail models, and an unpinned size picks among faithful ones.
    "family",
    "style",  # a style model takes ws, noise and /mix
    "w_dim",  # a client's ws are (num_ws, w_dim)
    "num_ws",
    "style_layers",  # the coarse / middle / fine ranges /mix crosses over at
)


class InterfaceChanged(RepositoryError):
    """A new version whose interface differs from the published one's, without --new-interface."""


def interface(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's interface: for a generator task, classes, class_names, channels, resolution,
    latent_size and style (with w_dim, num_ws and style_layers when style-based); for an upscaler
    task, channels, scale and family (its name and role, or None). Reads only `task` and the task's
    section, so a manifest still being built will do."""
    if manifest["task"] == "upscale":
        upscaler = manifest["upscaler"]
        family = upscaler.get("family")
        return {
            "task": "upscale",
            "channels": upscaler["channels"],
            "scale": upscaler["scale"],
            "family": None if family is None else {"name": family["name"], "role": family["role"]},
        }
    generator = manifest["generator"]
    output, style = generator["output"], generator.get("style")
    found: dict[str, Any] = {
        "task": manifest["task"],
        "classes": generator["classes"]["count"],
        "class_names": list(generator["classes"]["names"]),
        "channels": output["channels"],
        "resolution": [output["height"], output["width"]],
        "latent_size": generator["latent_size"],
        "style": style is not None,
    }
    if style is not None:
        found["w_dim"] = style["w_dim"]
        found["num_ws"] = style["num_ws"]
        found["style_layers"] = {group: list(span) for group, span in style["layers"].items()}
    return found


def interface_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, old value, new value) of every field that differs, in FIELDS' order; a field one
    side lacks (a generator's classes beside an upscaler) counts as None there."""
    return [(f, old.get(f), new.get(f)) for f in FIELDS if old.get(f) != new.get(f)]


def _shown(value: Any, limit: int = 60) -> str:
    """A value as compact JSON (so a list's commas cannot be read as the next field), cut short."""
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compared_version(repo: Path, name: str, version: int | None) -> int | None:
    """The published version a new one is compared with: the newest, other than the version being
    published (with --replace, a rebuilt version is held to the others, not to what it replaces);
    None when there is none."""
    others = [v for v in list_versions(repo, name) if v != version]
    return others[-1] if others else None


def refuse_interface_change(
    repo: Path, name: str, version: int | None, new: Mapping[str, Any], allowed: bool = False
) -> None:
    """Raise InterfaceChanged, naming each field that differs with its old and new value, when the
    `new` interface of NAME's `version` (None: the next number) differs from the newest other
    published version's; `allowed` (--new-interface) publishes it all the same."""
    if allowed:
        return
    reference = compared_version(repo, name, version)
    if reference is None:
        return
    existing = list_versions(repo, name)
    number = version if version is not None else existing[-1] + 1
    try:
        old = interface(read_version(repo, name, reference, verify_file=False))
    except ManifestError as e:
        first = str(e).splitlines()[0]
        raise InterfaceChanged(
            f"cannot compare the interface of {name} version {number} with version {reference}'s: "
            f"{first}; pass {NEW_INTERFACE_FLAG} to publish it without comparing"
        ) from None
    changes = interface_changes(old, new)
    if changes:
        listed = ", ".join(f"{field} {_shown(a)} -> {_shown(b)}" for field, a, b in changes)
        raise InterfaceChanged(
            f"{name} version {number}'s interface differs from version {reference}'s in {repo}: "
            f"{listed}; requests that name no version get the newest, so publish it under another "
            f"--name, or pass {NEW_INTERFACE_FLAG} if {name} is meant to change"
        )
