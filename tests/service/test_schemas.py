"""The answers' JSON, assembled by hand on the hot path, is exactly what their schemas describe."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter, ValidationError

from service.api.answers import generated_json, walk_json
from service.schemas.answers import Generated, GeneratedImage, Walk, WalkImage
from service.schemas.requests import GenerateRequest, WalkRequest


def test_the_generate_answer_is_its_schema_serialized() -> None:
    result = Generated(
        "digits-conditional",
        3,
        "png",
        32,
        32,
        1,
        [
            GeneratedImage(7, 3, "three", bytes(range(256)) * 3),
            GeneratedImage(2**63 - 1, None, None, b""),
            GeneratedImage(0, 0, 'a "quoted" \\ name', b"\x00"),
        ],
    )
    assert json.loads(generated_json(result)) == json.loads(TypeAdapter(Generated).dump_json(result))


def test_the_walk_answer_is_its_schema_serialized() -> None:
    result = Walk(
        "digits",
        1,
        "webp",
        32,
        32,
        1,
        1,
        1,
        [1, 2, 3],
        "slerp",
        None,
        None,
        [WalkImage(0, 0.0, b"a"), WalkImage(1, 0.5, b"bc"), WalkImage(2, 0.5, b"")],
    )
    assert walk_json(result) == json.loads(TypeAdapter(Walk).dump_json(result))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"seed": 1, "seeds": [2]}, "either seed or seeds"),
        ({"n": 2, "seeds": [2]}, "n is 2 but 1 seeds"),
        ({"seed": 2**63 - 1, "n": 2}, r"seed \+ n - 1 must be at most"),
        ({"seeds": []}, "at least 1 item"),
        ({"truncation": 0.01}, "greater than or equal to 0.05"),
        ({"truncation": 11}, "less than or equal to 10"),
    ],
)
def test_request_limits_live_in_the_request_model(body: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GenerateRequest.model_validate(body)


def test_a_request_counts_its_images() -> None:
    assert GenerateRequest.model_validate({}).count == 1
    assert GenerateRequest.model_validate({"n": 5}).count == 5
    assert GenerateRequest.model_validate({"seeds": [4, 5, 6]}).count == 3
    with pytest.raises(ValidationError, match="steps"):
        WalkRequest.model_validate({"from_seed": 1, "to_seed": 2, "steps": 1})
    assert WalkRequest.model_validate({"from_seed": 1, "to_seed": 2, "steps": 5}).count == 5
    loop = WalkRequest.model_validate({"seeds": [7, 1, 7], "steps": 4})
    assert (loop.count, loop.waypoints) == (12, [7, 1, 7])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"seeds": [1, 2], "from_seed": 3},
            "either seeds .a loop. or from_seed and to_seed, not both: drop from_seed",
        ),
        ({"seeds": [1, 2], "to_seed": 3}, "drop to_seed"),
        ({"seeds": [1]}, "at least 2 items"),
        ({}, "from_seed and to_seed missing"),
        ({"to_seed": 2}, "from_seed missing"),
        ({"from_seed": 1, "to_seed": 2, "frame_ms": 50}, "give animation too"),
        ({"from_seed": 1, "to_seed": 2, "animation": "gif", "format": "jpeg"}, "drop format"),
        ({"from_seed": 1, "to_seed": 2, "animation": "mp4"}, "animation"),
        ({"from_seed": 1, "to_seed": 2, "animation": "gif", "frame_ms": 19}, "greater than or equal to 20"),
        (
            {"from_seed": 1, "to_seed": 2, "animation": "gif", "frame_ms": 10001},
            "less than or equal to 10000",
        ),
    ],
)
def test_a_walk_is_from_one_seed_to_another_or_a_loop(body: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WalkRequest.model_validate(body)
