"""Which served upscaler(s) answer an /upscale request, and at what output size.

- No size, no detail: the model asked for (default: the first by name), at its own factor.
- A size (`scale`, or `width`/`height` with `fit`): of the faithful models, the one with the
  largest factor not above the one asked for (service.images.output_size.choose_scale), then an
  antialiased resize; a model asked for by name runs whatever the size, resized to it.
- `detail` d in [0, 1]: a family's faithful and detail models, each tile through both, blended
  (1 - d) : d. The weight is not a model input, so requests with any detail share batches.
"""

from __future__ import annotations

from contract.errors import InvalidRequest
from service.images.output_size import OutputSize, choose_scale, plan_output_size
from service.lifecycle.catalog import ModelCatalog
from service.schemas.requests import UpscaleOptions
from service.served.upscaler import UpscalePath, Upscaler


def candidates(catalog: ModelCatalog, options: UpscaleOptions) -> list[Upscaler]:
    """The upscalers a request with these options could run on, whatever its image: the door
    (service.transport.door) refuses it at its headers only when every one of them is shedding."""
    if options.detail is None and options.model is not None:  # the model asked for, at any size
        return [catalog.resolve(options.model, Upscaler)]
    sized = options.scale is not None or options.width is not None or options.height is not None
    if options.detail is None and not sized:
        return [catalog.resolve(None, Upscaler)]
    return [catalog.resolve(name, Upscaler) for name in catalog.names(Upscaler)]


def choose_path(catalog: ModelCatalog, options: UpscaleOptions, width: int, height: int) -> UpscalePath:
    """The path for an upright (width, height) input. InvalidRequest when the size or detail
    asked for cannot be made by the served models."""
    asked = None if options.model is None else catalog.resolve(options.model, Upscaler)
    pinned = None if options.detail_model is None else catalog.resolve(options.detail_model, Upscaler)
    if pinned is not None and (options.detail is None or asked is None):
        raise InvalidRequest(
            "detail_model pins the partner of the model asked for: give model and detail too"
        )
    sized = options.scale is not None or options.width is not None or options.height is not None
    if options.detail is None and not sized:  # as before sizes: one model at its own factor
        model = asked or catalog.resolve(None, Upscaler)
        return UpscalePath(model, plan_output_size(width, height, native=model.scale, largest=model.scale))
    # the other paths choose among every served upscaler
    served = [catalog.resolve(name, Upscaler) for name in catalog.names(Upscaler)]
    if not served:  # starting, or no upscaler loaded: the catalog's own error (503, 404)
        catalog.resolve(None, Upscaler)
    largest = max((m.scale for m in served), default=asked.scale if asked else 1)

    def size_for(model: Upscaler) -> OutputSize:
        return plan_output_size(
            width,
            height,
            native=model.scale,
            largest=max(largest, model.scale),
            scale=options.scale,
            width=options.width,
            height=options.height,
            fit=options.fit,
        )

    if options.detail is None:
        if asked is not None:
            return UpscalePath(asked, size_for(asked))
        candidates = [m for m in served if m.family_role != "detail"] or served
        size = size_for(candidates[0])
        scale = choose_scale(size.factor, sorted({m.scale for m in candidates}))
        return UpscalePath(next(m for m in candidates if m.scale == scale), size)

    # detail: a family's faithful and detail models
    if asked is not None:
        faithful, sharp = _family(served, asked, pinned)
    else:
        families = [
            _family(served, m) for m in served if m.family_role == "faithful" and _has_pair(served, m)
        ]
        if not families:
            raise InvalidRequest(
                "detail needs a family of upscalers (a faithful and a detail model of one factor, "
                "manifest upscaler.family); no served upscaler is in one"
            )
        if sized:  # the factor asked for (the same for any family: a size is asked, not native)
            scale = choose_scale(size_for(families[0][0]).factor, sorted({f.scale for f, _ in families}))
            faithful, sharp = next((f, d) for f, d in families if f.scale == scale)
        else:
            faithful, sharp = families[0]
    size = size_for(faithful)
    if options.detail <= 0.0:
        return UpscalePath(faithful, size, detail=0.0)
    if options.detail >= 1.0:
        return UpscalePath(sharp, size, detail=1.0)
    return UpscalePath(faithful, size, blend=sharp, detail=options.detail)


def _has_pair(served: list[Upscaler], model: Upscaler) -> bool:
    return any(m.family_name == model.family_name and m.family_role != model.family_role for m in served)


def _family(
    served: list[Upscaler], model: Upscaler, pinned: Upscaler | None = None
) -> tuple[Upscaler, Upscaler]:
    """(faithful, detail) of `model`'s family, `model` itself in its own role and `pinned` (the
    request's detail_model) in the other, so that pinned versions are kept; 400 when it has no
    family, its partner is not served or not its partner, or the two cannot blend."""
    if model.family_name is None:
        raise InvalidRequest(
            f"model {model.name!r} is in no family, so it has no detail model to blend with; detail "
            "needs a family (manifest upscaler.family), or leave detail out"
        )
    wanted = "detail" if model.family_role == "faithful" else "faithful"
    if pinned is not None and (pinned.family_name, pinned.family_role) != (model.family_name, wanted):
        raise InvalidRequest(
            f"detail_model {pinned.name!r} is not the {wanted} model of {model.name!r}'s family "
            f"{model.family_name!r}"
        )
    partner = pinned or next(
        (m for m in served if m.family_name == model.family_name and m.family_role == wanted), None
    )
    if partner is None:
        raise InvalidRequest(
            f"model {model.name!r} is the {model.family_role} model of family {model.family_name!r}, "
            f"whose {wanted} model is not served; detail blends the two"
        )
    faithful, sharp = (model, partner) if model.family_role == "faithful" else (partner, model)
    shapes = {(m.scale, m.channels, m.tile, m.overlap) for m in (faithful, sharp)}
    if len(shapes) > 1:
        raise InvalidRequest(
            f"family {model.family_name!r}: {faithful.name} and {sharp.name} differ in scale, channels or "
            "tiles, so their outputs cannot be blended; re-export them alike"
        )
    return faithful, sharp
