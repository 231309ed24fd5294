"""The contract's endpoint descriptions and the service's pydantic models held to each other (every
field, default, bound and choice), and the contract's own rules: checking, splitting into parts."""

from __future__ import annotations

import types
import typing
from typing import Any

import annotated_types
import pytest
from pydantic import BaseModel

from contract.endpoints import (
    ENDPOINTS,
    GENERATE,
    GENERATOR,
    MAX_SEED,
    MIX,
    STYLE,
    UPSCALE,
    UPSCALER,
    WALK,
    ContractError,
    Endpoint,
    UpscaleOptions,
    random_start,
)
from contract.provenance import SCHEMA
from contract.regeneration import NotReproducible, regeneration
from service.schemas.requests import GenerateRequest, MixRequest, WalkRequest
from service.schemas.requests import UpscaleOptions as UpscaleQuery

PAIRS = [(GENERATE, GenerateRequest), (WALK, WalkRequest), (MIX, MixRequest), (UPSCALE, UpscaleQuery)]


def described(annotation: Any, metadata: list[Any]) -> dict[str, Any]:
    """A pydantic field's annotation and constraints in the contract's terms."""
    out: dict[str, Any] = {
        "types": set(),
        "many": False,
        "ge": None,
        "le": None,
        "min_items": None,
        "choices": set(),
    }

    def walk(tp: Any, meta: list[Any]) -> None:
        for m in meta:
            if isinstance(m, annotated_types.Ge):
                out["ge"] = m.ge
            elif isinstance(m, annotated_types.Le):
                out["le"] = m.le
            elif isinstance(m, annotated_types.MinLen):
                out["min_items"] = m.min_length
            elif hasattr(m, "metadata"):  # a FieldInfo inside Annotated
                walk(Any, list(m.metadata))
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            base, *extra = typing.get_args(tp)
            walk(base, extra)
        elif origin in (typing.Union, types.UnionType):
            for arg in typing.get_args(tp):
                walk(arg, [])
        elif origin is list:
            out["many"] = True
            walk(typing.get_args(tp)[0], [])
        elif origin is typing.Literal:
            out["choices"] |= set(typing.get_args(tp))
            out["types"].add(str)
        elif tp in (int, float, str, bool):
            out["types"].add(tp)

    walk(annotation, metadata)
    return out


@pytest.mark.parametrize(("endpoint", "model"), PAIRS, ids=[e.path for e, _ in PAIRS])
def test_the_pydantic_model_and_the_contract_agree(endpoint: Endpoint, model: type[BaseModel]) -> None:
    assert list(model.model_fields) == list(endpoint.names)
    for name, info in model.model_fields.items():
        field, seen = endpoint.field(name), described(info.annotation, list(info.metadata))
        assert info.default == field.default, name
        assert seen["choices"] == set(field.choices), name
        assert (seen["ge"], seen["le"], seen["min_items"]) == (field.ge, field.le, field.min_items), name
        # labels are one or a list in pydantic, split one_or_each in the contract
        assert seen["many"] == (field.many or field.split == "one_or_each"), name
        assert seen["types"] == set(field.types), name


def test_accepts_by_kind() -> None:
    assert "truncation" in GENERATE.accepts(GENERATOR) and "truncation" not in GENERATE.accepts(STYLE)
    assert "ws" in GENERATE.accepts(STYLE) and "ws" not in GENERATE.accepts(GENERATOR)
    assert MIX.accepts(GENERATOR) == [] and "model" not in UPSCALE.accepts(UPSCALER)
    assert set(ENDPOINTS) == {"/generate", "/walk", "/mix", "/upscale"}


def test_check_refuses_what_the_server_refuses() -> None:
    GENERATE.check({"seed": 3, "labels": ["cat", 2], "format": "webp", "truncation": 0.7})
    for body, words in [
        ({"seed": -1}, f"seed is from 0 to {MAX_SEED}; got -1"),
        ({"seed": MAX_SEED + 1}, "from 0 to"),
        ({"seed": True}, "seed is an integer, got True"),
        ({"seeds": []}, "at least 1 item"),
        ({"seeds": 3}, "is a list"),
        ({"format": "bmp"}, "one of png"),
        ({"truncation": float("nan")}, "from 0.05 to 10; got nan"),
        ({"colour": 1}, "no field 'colour'"),
    ]:
        with pytest.raises(ContractError, match=words):
            GENERATE.check(body)
    MIX.check({"crossover": 3})
    MIX.check({"crossover": "fine"})
    with pytest.raises(ContractError, match="one of coarse"):
        MIX.check({"crossover": "top"})
    with pytest.raises(ContractError, match="not both"):
        UPSCALE.check({"scale": 2.0, "width": 30})
    assert UPSCALE.broken_rule({"fit": "cover", "width": 3}, spell=lambda n: f"--{n}") == (
        "--fit applies when both --width and --height are given"
    )


def test_parts_split_each_per_image_field() -> None:
    values = {"seed": 10, "n": 5, "labels": [0, 1, 2, 3, 4], "noise_seed": 100, "format": "png"}
    assert GENERATE.count(values) == 5
    assert GENERATE.parts(values, 2) == [
        (0, {"n": 2, "seed": 10, "labels": [0, 1], "noise_seed": 100}),
        (2, {"n": 2, "seed": 12, "labels": [2, 3], "noise_seed": 102}),
        (4, {"n": 1, "seed": 14, "labels": [4], "noise_seed": 104}),
    ]
    assert GENERATE.parts({"seeds": [7, 8, 9], "labels": "cat"}, 2) == [
        (0, {"n": 2, "seeds": [7, 8]}),
        (2, {"n": 1, "seeds": [9]}),
    ]
    with pytest.raises(ContractError, match="2 labels for 3 images; give one label, or one per image"):
        GENERATE.parts({"seeds": [7, 8, 9], "labels": [1, 2]}, 2)


def test_the_server_draws_a_start_only_when_no_seed_is_given() -> None:
    assert GENERATE.needs_start({"n": 4})
    assert not GENERATE.needs_start({"seed": 0}) and not GENERATE.needs_start({"seeds": [1]})
    assert not GENERATE.needs_start({"ws": ["..."]})
    assert 0 <= random_start(1000) < MAX_SEED - 1000


def test_the_clients_upscale_options_are_the_endpoints_fields() -> None:
    assert list(UpscaleOptions.__annotations__) == list(UPSCALE.names)


def test_messages_name_fields_as_the_caller_spells_them() -> None:
    flag = lambda name: "--" + name  # noqa: E731
    with pytest.raises(ContractError, match=r"^--scale is the factor to enlarge by, from 1 to 64; got 0.5$"):
        UPSCALE.check({"scale": 0.5}, spell=flag)
    with pytest.raises(ContractError, match=r"^--strip is one of all, gps, none; got 'x'$"):
        UPSCALE.check({"strip": "x"}, spell=flag)


def test_a_record_rebuilt_into_a_request_holds_plain_strings_only() -> None:
    """A file's record is untrusted: a label list with a newline in it is not made into a command."""
    record = {
        "schema": SCHEMA,
        "endpoint": "/generate",
        "model": {"name": "digits", "version": 1},
        "format": "png",
        "source": "seed",
        "seed": 7,
    }
    assert regeneration(record | {"label": "cat"}).body["labels"] == "cat"
    for label in (["x\n; rm -rf ~"], "x\n; rm", [1, "dog;"]):
        with pytest.raises(NotReproducible, match="plain name"):
            regeneration(record | {"label": label})
