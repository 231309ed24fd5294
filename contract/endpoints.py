"""One description per endpoint: its fields, their types, bounds and choices, the model kinds that
take each, the rules between fields, and how a request splits into per-image parts.

Everything that reads a request without the server's pydantic models derives from these: each
served model's `accepts()`, the NDJSON splitter, the check of a body rebuilt from a provenance
record, and the client's request builders. The pydantic models (service.schemas) stay the
service's validation and OpenAPI schema; tests/contract holds the two to each other.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

MAX_SEED = 2**63 - 1  # seeds are int64 on the wire and in the graphs
# Below this, redrawing until every component fits takes unboundedly long (acceptance ~ 0.8 t).
MIN_TRUNCATION = 0.05

GENERATOR, STYLE, UPSCALER = "generator", "style", "upscaler"  # the served model kinds
GENERATORS = (GENERATOR, STYLE)

# How a field splits when a request is cut into parts of images offset..offset+size:
#   count: the number of images (the part's size); each: a list, one item per image (sliced);
#   offset: the first image's integer, image i gets value + i; one_or_each: one value for every
#   image, or a list of one per image (sliced).
Split = Literal["count", "each", "offset", "one_or_each"]


class ContractError(ValueError):
    """A value or a combination of values the endpoint refuses; the message names the field."""


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple[type, ...]  # of the value, or of each item when `many`; float takes int too
    many: bool = False  # a list (min_items long at least)
    default: Any = None
    ge: float | None = None  # bounds of numbers (of each number in a list)
    le: float | None = None
    min_items: int | None = None
    choices: tuple[str, ...] = ()  # the strings it takes (a str value must be one of them)
    kinds: tuple[str, ...] = GENERATORS  # the model kinds that take it
    split: Split | None = None
    what: str = ""  # what a number is, for a refusal's message ("the factor to enlarge by")

    def check(self, value: Any, spell: Callable[[str], str] = str) -> None:
        """ContractError unless `value` is what the field takes (None: not given); the message
        names the field as `spell` writes it (a CLI: "--scale")."""
        if value is None:
            return
        name = spell(self.name)
        if self.split == "one_or_each" and isinstance(value, list):
            for item in value:
                self._check_one(name, item)
            return
        if self.many:
            if not isinstance(value, list):
                raise ContractError(f"{name} is a list")
            if self.min_items is not None and len(value) < self.min_items:
                raise ContractError(f"{name} holds at least {self.min_items} item(s)")
            for item in value:
                self._check_one(name, item)
            return
        self._check_one(name, value)

    def _check_one(self, name: str, value: Any) -> None:
        if not _is_a(value, self.types):
            names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in self.types)
            raise ContractError(f"{name} is {names}, got {value!r}")
        if isinstance(value, str) and self.choices and value not in self.choices:
            raise ContractError(f"{name} is one of {', '.join(self.choices)}; got {value!r}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            low, high = self.ge, self.le
            if (
                not math.isfinite(value)
                or (low is not None and value < low)
                or (high is not None and value > high)
            ):
                raise ContractError(f"{name} is {self._range()}; got {value!r}")

    def _range(self) -> str:
        if self.ge is not None and self.le is not None:
            bounds = f"from {_number(self.ge)} to {_number(self.le)}"
        elif self.ge is not None:
            bounds = f"at least {_number(self.ge)}"
        elif self.le is not None:
            bounds = f"at most {_number(self.le)}"
        else:
            bounds = "a finite number"
        return f"{self.what}, {bounds}" if self.what else bounds


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _is_a(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


@dataclass(frozen=True)
class Rule:
    """A rule between fields: `broken(values)` says whether the values break it."""

    fields: tuple[str, ...]
    broken: Callable[[Mapping[str, Any]], bool]
    message: str  # with {name} placeholders: the field names, as the caller spells them

    def explain(self, spell: Callable[[str], str] = str) -> str:
        return self.message.format(**{f: spell(f) for f in self.fields})


@dataclass(frozen=True)
class Endpoint:
    path: str
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...] = ()
    count_from: tuple[str, ...] = ()  # the fields whose length (a list) or value (n) is the count
    random_start: str | None = None  # drawn by the server when no field of count_from gives seeds
    by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})

    def field(self, name: str) -> Field:
        return self.by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def accepts(self, kind: str) -> list[str]:
        """The fields a model of `kind` takes (GET /v1/models), `model` aside: it names the model."""
        return [f.name for f in self.fields if kind in f.kinds and f.name != "model"]

    def check(self, values: Mapping[str, Any], spell: Callable[[str], str] = str) -> None:
        """ContractError for an unknown field, a value a field does not take, or a broken rule."""
        for name, value in values.items():
            if name not in self.by_name:
                raise ContractError(f"{self.path} takes no field {spell(name)!r}")
            self.field(name).check(value, spell)
        broken = self.broken_rule(values, spell)
        if broken is not None:
            raise ContractError(broken)

    def broken_rule(self, values: Mapping[str, Any], spell: Callable[[str], str] = str) -> str | None:
        """The first rule the values break, explained with field names as `spell` writes them."""
        return next((rule.explain(spell) for rule in self.rules if rule.broken(values)), None)

    def count(self, values: Mapping[str, Any]) -> int:
        """How many images a request asks for: the first of count_from given, else 1."""
        for name in self.count_from:
            value = values.get(name)
            if value is not None:
                return len(value) if isinstance(value, list) else int(value)
        return 1

    def check_per_image(self, values: Mapping[str, Any], count: int) -> None:
        """ContractError for a one_or_each list whose length is not the count."""
        for f in self.fields:
            value = values.get(f.name)
            if f.split == "one_or_each" and isinstance(value, list) and len(value) != count:
                one = f.name.removesuffix("s")
                raise ContractError(
                    f"{len(value)} {f.name} for {count} images; give one {one}, or one per image"
                )

    def parts(self, values: Mapping[str, Any], size: int) -> list[tuple[int, dict[str, Any]]]:
        """(offset, the fields that change) for every part of at most `size` images, each the same
        request for its slice of the images. The values hold the start seed already (see
        `random_start`); ContractError as the whole request would be refused for its per-image lists."""
        count = self.count(values)
        self.check_per_image(values, count)
        out = []
        for start in range(0, count, size):
            stop = min(count, start + size)
            update: dict[str, Any] = {}
            for f in self.fields:
                value = values.get(f.name)
                if f.split == "count":
                    update[f.name] = stop - start
                elif value is None:
                    continue
                elif f.split == "each" or (f.split == "one_or_each" and isinstance(value, list)):
                    update[f.name] = value[start:stop]
                elif f.split == "offset":
                    update[f.name] = value + start
            out.append((start, update))
        return out

    def needs_start(self, values: Mapping[str, Any]) -> bool:
        """Whether the server draws the first seed: no field of count_from that holds seeds, and no
        random_start field, was given."""
        if self.random_start is None or values.get(self.random_start) is not None:
            return False
        return all(values.get(name) is None for name in self.count_from if self.field(name).split == "each")

    def query(self, values: Mapping[str, Any]) -> dict[str, str]:
        """The values as query parameters (None left out: the server's default)."""
        return {
            name: str(value) for name, value in values.items() if name in self.by_name and value is not None
        }


def random_start(max_n: int) -> int:
    """The first seed of a request that gives none: room left for max_n images after it."""
    return secrets.randbelow(MAX_SEED - max_n)


# --- the endpoints --------------------------------------------------------------------------------

FORMATS = ("png", "jpeg", "webp", "npy")
ANIMATIONS = ("webp", "gif", "apng")
NOISE = ("random", "const")
CROSSOVER_GROUPS = ("coarse", "middle", "fine")
FITS = ("contain", "cover", "exact")
STRIPS = ("all", "gps", "none")

_MODEL = Field("model", (str,), kinds=(GENERATOR, STYLE, UPSCALER))
_LABEL = (int, str)  # a class index or a class name
_TRUNCATION = Field("truncation", (float,), ge=MIN_TRUNCATION, le=10.0, kinds=(GENERATOR,))
_NOISE = Field("noise", (str,), choices=NOISE, kinds=(STYLE,))
_FORMAT = Field("format", (str,), default="png", choices=FORMATS)


def _seed(name: str, **more: Any) -> Field:
    return Field(name, (int,), ge=0, le=MAX_SEED, **more)


def _psi(default: float | None = None) -> Field:
    return Field("truncation_psi", (float,), default=default, ge=0.0, le=1.0, kinds=(STYLE,))


GENERATE = Endpoint(
    "/generate",
    (
        _MODEL,
        Field("n", (int,), ge=1, split="count"),
        _seed("seed", split="offset"),
        _seed("seeds", many=True, min_items=1, split="each"),
        Field("labels", _LABEL, split="one_or_each"),
        _TRUNCATION,
        _psi(),
        _seed("noise_seed", kinds=(STYLE,), split="offset"),
        _NOISE,
        Field("ws", (str,), many=True, min_items=1, kinds=(STYLE,), split="each"),
        Field("return_latents", (bool,), default=False, kinds=(STYLE,)),
        _FORMAT,
    ),
    count_from=("ws", "seeds", "n"),
    random_start="seed",
)

WALK = Endpoint(
    "/walk",
    (
        _MODEL,
        _seed("from_seed"),
        _seed("to_seed"),
        _seed("seeds", many=True, min_items=2),
        Field("steps", (int,), default=8, ge=2),
        Field("label", _LABEL),
        _TRUNCATION,
        _psi(),
        _seed("noise_seed", kinds=(STYLE,)),
        _NOISE,
        Field("method", (str,), choices=("slerp", "lerp")),
        _FORMAT,
        Field("animation", (str,), choices=ANIMATIONS),
        Field("frame_ms", (int,), default=100, ge=20, le=10000),
    ),
)

MIX = Endpoint(
    "/mix",
    (
        Field("model", (str,), kinds=(STYLE,)),
        _seed("row_seeds", many=True, min_items=1, kinds=(STYLE,)),
        _seed("col_seeds", many=True, min_items=1, kinds=(STYLE,)),
        Field("row_ws", (str,), many=True, min_items=1, kinds=(STYLE,)),
        Field("col_ws", (str,), many=True, min_items=1, kinds=(STYLE,)),
        Field("crossover", (str, int), default="coarse", ge=0, choices=CROSSOVER_GROUPS, kinds=(STYLE,)),
        Field("label", _LABEL, kinds=(STYLE,)),
        _psi(1.0),
        _seed("noise_seed", kinds=(STYLE,)),
        _NOISE,
        Field("grid", (bool,), default=False, kinds=(STYLE,)),
        Field("return_latents", (bool,), default=False, kinds=(STYLE,)),
        Field("format", (str,), default="png", choices=FORMATS, kinds=(STYLE,)),
    ),
)

UPSCALE = Endpoint(
    "/upscale",
    (
        Field("model", (str,), kinds=(UPSCALER,)),
        Field("format", (str,), choices=FORMATS, kinds=(UPSCALER,)),
        Field("scale", (float,), ge=1.0, le=64.0, kinds=(UPSCALER,), what="the factor to enlarge by"),
        Field("width", (int,), ge=1, le=65536, kinds=(UPSCALER,), what="the output's size in pixels"),
        Field("height", (int,), ge=1, le=65536, kinds=(UPSCALER,), what="the output's size in pixels"),
        Field("fit", (str,), choices=FITS, kinds=(UPSCALER,)),
        Field(
            "detail", (float,), ge=0.0, le=1.0, kinds=(UPSCALER,), what="a weight (0: faithful, 1: detail)"
        ),
        Field("detail_model", (str,), kinds=(UPSCALER,)),
        Field("strip", (str,), default="gps", choices=STRIPS, kinds=(UPSCALER,)),
    ),
    rules=(
        Rule(
            ("scale", "width", "height"),
            lambda v: (
                v.get("scale") is not None and (v.get("width") is not None or v.get("height") is not None)
            ),
            "give either {scale}, or {width} and/or {height}, not both",
        ),
        Rule(
            ("fit", "width", "height"),
            lambda v: v.get("fit") is not None and (v.get("width") is None or v.get("height") is None),
            "{fit} applies when both {width} and {height} are given",
        ),
    ),
)

ENDPOINTS = {e.path: e for e in (GENERATE, WALK, MIX, UPSCALE)}


class UpscaleOptions(TypedDict, total=False):
    """/upscale's options as keyword arguments (the client's `upscale`): UPSCALE's fields, None
    for the server's default. tests/contract holds the two together."""

    model: str | None
    format: str | None
    scale: float | None
    width: int | None
    height: int | None
    fit: str | None
    detail: float | None
    detail_model: str | None
    strip: str | None
