"""Version policies, model references and the routing of one model's versions (no I/O)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from contract.errors import InvalidRequest, UnknownModel
from model_repository.version_policy import PolicyError, VersionPolicies, VersionPolicy
from service.config import Settings
from service.lifecycle.versions import Canary, ServedVersions, canary_point, parse_model_ref
from service.served.model import ServedModel


@pytest.mark.parametrize(
    ("text", "published", "selected"),
    [
        ("latest:1", [1, 2, 5], [5]),
        ("latest:2", [1, 2, 5], [2, 5]),
        ("latest:9", [1, 2], [1, 2]),
        ("all", [1, 2, 5], [1, 2, 5]),
        ("versions:5,1", [1, 2, 5], [1, 5]),
        ("versions:3", [1, 2], []),
        (" latest : 3 ", [1, 2, 3, 4], [2, 3, 4]),
    ],
)
def test_a_policy_selects_versions(text: str, published: list[int], selected: list[int]) -> None:
    assert VersionPolicy.parse(text).select(published) == selected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "latest",
        "latest:0",
        "latest:-1",
        "latest:x",
        "some",
        "versions:",
        "versions:0",
        "versions:1,a",
        "all:2",
        "latest:1001",
    ],
)
def test_a_bad_policy_is_refused_with_the_grammar(text: str) -> None:
    with pytest.raises(PolicyError, match="expected latest:N"):
        VersionPolicy.parse(text)


def test_policies_per_model_and_in_the_settings() -> None:
    policies = VersionPolicies.parse("latest:2; digits=versions:1,3 ;faces=all;")
    assert str(policies.of("digits")) == "versions:1,3"
    assert str(policies.of("faces")) == "all"
    assert str(policies.of("other")) == "latest:2"
    assert str(VersionPolicies.parse("").of("x")) == "latest:1"
    with pytest.raises(PolicyError, match="not a model name"):
        VersionPolicies.parse("Bad Name=latest:1")
    with pytest.raises(ValueError, match="version policy 'latest:zero'"):
        Settings(version_policy="digits=latest:zero")


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [("digits", ("digits", None)), ("digits@3", ("digits", 3)), ("a.b-c@12", ("a.b-c", 12))],
)
def test_model_references(ref: str, parsed: tuple[str, int | None]) -> None:
    assert parse_model_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["digits@", "digits@0", "digits@x", "digits@1@2", "digits@-1", "digits@1.5"])
def test_a_bad_model_reference_is_a_clear_400(ref: str) -> None:
    with pytest.raises(InvalidRequest, match="NAME@VERSION"):
        parse_model_ref(ref)


class Version:
    """Stands in for a served model: routing reads nothing but the version."""

    def __init__(self, version: int) -> None:
        self.version = version


def series(*versions: int) -> ServedVersions:
    out = ServedVersions("digits")
    for v in versions:
        out.add(cast(ServedModel, Version(v)))
    return out


def test_the_newest_serves_unless_rolled_back_and_pins_are_exact() -> None:
    s = series(1, 3, 2)
    assert s.pick(None, 7).version == 3 and s.role(3) == "default"
    assert s.pick(1, None).version == 1
    with pytest.raises(UnknownModel, match="no version 4 loaded; loaded: 1, 2, 3"):
        s.pick(4, None)
    s.default = 1  # a rollback
    assert s.pick(None, 7).version == 1 and s.role(1) == "default" and s.role(3) is None
    s.remove(1)  # the rollback target unloaded: the newest again
    assert s.default is None and s.pick(None, 7).version == 3


def test_the_canary_takes_its_share_by_seed_and_a_seed_always_lands_on_the_same_version() -> None:
    s = series(1, 2)
    s.default = 1
    s.canary = Canary(2, 0.25)
    picks = {seed: s.pick(None, seed).version for seed in range(4000)}
    share = sum(v == 2 for v in picks.values()) / len(picks)
    assert 0.22 < share < 0.28
    assert all(s.pick(None, seed).version == v for seed, v in list(picks.items())[:500])  # stable
    assert canary_point(12345) == canary_point(12345) and 0 <= canary_point(0) < 1
    assert s.role(2) == "canary"
    s.remove(2)
    assert s.canary is None and {s.pick(None, seed).version for seed in range(50)} == {1}


def test_unseeded_requests_are_shared_at_random() -> None:
    s = series(1, 2)
    s.default = 1
    s.canary = Canary(2, 0.5)
    got: dict[int, Any] = {1: 0, 2: 0}
    for _ in range(400):
        got[s.pick(None, None).version] += 1
    assert got[1] > 100 and got[2] > 100
