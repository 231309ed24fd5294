"""Regenerating an image from its provenance record: the request whose answer holds it again, byte
for byte. A file's record is untrusted, so the request built from it is checked against the
endpoint's own description (contract.endpoints) before anyone sends it or prints it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from contract.endpoints import ENDPOINTS, ContractError
from contract.media import ANIMATION_MEDIA_TYPES, JSON, MEDIA_TYPES
from contract.provenance import SCHEMA, W_SOURCE


class NotReproducible(ValueError):
    """A record that no request can remake: an image from a client's w, or an unknown record."""


@dataclass(frozen=True)
class Regeneration:
    """The request that makes a recorded image again."""

    endpoint: str  # "/generate", "/walk" or "/mix"
    body: dict[str, Any]  # its JSON body (the model pinned as NAME@VERSION)
    accept: str  # its Accept header: the image's own media type, or JSON
    pick: tuple[str | int, ...] = ()  # with JSON: where the image's base64 data is in the answer

    @property
    def extension(self) -> str:
        """The file name extension of the image it answers."""
        fmt = self.body.get("animation") or self.body.get("format", "png")
        return ".png" if fmt == "apng" else ".jpg" if fmt == "jpeg" else f".{fmt}"


def regeneration(record: dict[str, Any]) -> Regeneration:
    """The request whose answer holds the recorded image again, byte for byte (for the same model
    version: the body pins it). NotReproducible for an image made from a client's w (the record
    says so), a schema this reader does not know, or a record that lacks a field it needs."""
    schema = record.get("schema")
    if schema != SCHEMA:
        raise NotReproducible(f"schema {schema!r} is not one this reader knows ({SCHEMA})")
    if record.get("source") == W_SOURCE:
        raise NotReproducible(
            f"made from a {W_SOURCE}, not from seeds: send the same w again "
            "(a w comes back with return_latents) to remake it"
        )
    try:
        endpoint = record["endpoint"]
        name, version = record["model"]["name"], record["model"]["version"]
        if not isinstance(name, str) or not MODEL_NAME.match(name) or not _is_int(version):
            raise NotReproducible("the record's model is not a model name and version")
        model = f"{name}@{version}"
        if endpoint == "/generate":
            regen = _generate(record, model)
        elif endpoint == "/walk":
            regen = _walk(record, model)
        elif endpoint == "/mix":
            regen = _mix(record, model)
        else:
            raise NotReproducible(f"unknown endpoint {endpoint!r}")
        _check_body(regen)
    except NotReproducible:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise NotReproducible(f"the record lacks what remaking the image needs ({e!r})") from None
    return regen


# A class name or a crossover group: nothing a shell reads (the CLI prints commands made from a
# record, and a string with a newline in it could smuggle a second command into them).
PLAIN = re.compile(r"^[\w.-]{1,64}\Z")
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_body(regen: Regeneration) -> None:
    """What a regeneration request is built from must be what a real request holds: the endpoint's
    fields, types, bounds and choices, and plain strings only."""
    body = {k: v for k, v in regen.body.items() if k != "model"}  # the model: checked by MODEL_NAME
    try:
        ENDPOINTS[regen.endpoint].check(body)
    except ContractError as e:
        raise NotReproducible(f"the record's {e}") from None
    for key in ("labels", "label", "crossover"):
        value = body.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and not PLAIN.match(item):
                raise NotReproducible(f"the record's {key} is neither a class index nor a plain name")
    if not all(_is_int(step) or step in ("images", "cells", "data") for step in regen.pick):
        raise NotReproducible("the record's frame is not an index")


def _generate(record: dict[str, Any], model: str) -> Regeneration:
    body: dict[str, Any] = {"model": model, "seed": record["seed"]}
    if record["label"] is not None:
        body["labels"] = record["label"]
    body |= _sampling(record)
    fmt = record["format"]
    body["format"] = fmt
    return Regeneration("/generate", body, MEDIA_TYPES[fmt])


def _walk(record: dict[str, Any], model: str) -> Regeneration:
    body: dict[str, Any] = {"model": model}
    if "seeds" in record:
        body["seeds"] = list(record["seeds"])
    else:
        body |= {"from_seed": record["from_seed"], "to_seed": record["to_seed"]}
    body |= {"steps": record["steps"], "method": record["method"]}
    if record["label"] is not None:
        body["label"] = record["label"]
    body |= _sampling(record)
    if "animation" in record:
        animation = record["animation"]
        body |= {"animation": animation, "frame_ms": record["frame_ms"]}
        return Regeneration("/walk", body, ANIMATION_MEDIA_TYPES[animation])
    body["format"] = record["format"]
    return Regeneration("/walk", body, JSON, ("images", record["frame"]["index"], "data"))


def _mix(record: dict[str, Any], model: str) -> Regeneration:
    body: dict[str, Any] = {"model": model}
    grid = record["image"] == "grid"
    if grid:
        body |= {"row_seeds": list(record["row_seeds"]), "col_seeds": list(record["col_seeds"])}
    else:
        body |= {"row_seeds": [record["row_seed"]], "col_seeds": [record["col_seed"]]}
    body["crossover"] = record["crossover"]
    if record["label"] is not None:
        body["label"] = record["label"]
    body |= _sampling(record)
    fmt = record["format"]
    body["format"] = fmt
    if grid:
        body["grid"] = True
        return Regeneration("/mix", body, MEDIA_TYPES[fmt])
    return Regeneration("/mix", body, JSON, ("cells", 0, 0, "data"))


def _sampling(record: dict[str, Any]) -> dict[str, Any]:
    """truncation (z models), or truncation_psi and the noise (style models), as request fields."""
    out: dict[str, Any] = {}
    if record.get("truncation") is not None:
        out["truncation"] = record["truncation"]
    if "truncation_psi" in record:
        out["truncation_psi"] = record["truncation_psi"]
        if record.get("noise") == "const":
            out["noise"] = "const"
        elif record.get("noise_seed") is not None:
            out["noise_seed"] = record["noise_seed"]
    return out
