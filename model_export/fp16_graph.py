"""A published fp32 graph converted to float16 at the graph level, keeping its interface.

Used where the PyTorch generator is gone (the bundled models ship without their checkpoints) and
only the published model.onnx is left. Every float32 initializer, constant and computation
becomes float16; the graph's own inputs and outputs keep their dtypes, with Cast nodes at the
boundaries (a float32 input is cast to float16 on entry, a float32 output back on exit; uint8 and
int64 values are untouched), so a caller feeds the fp16 graph exactly as it feeds the fp32 one.
A few operator inputs are float32 by the ONNX spec whatever the operator computes in (Resize's
scales): those keep float32 values, cast back when they are computed.

Also here: the pixel graph's "tap" (the value just before rounding to uint8, as an extra output)
that lets parity compare two pixel graphs in model units, and the check that two graphs take
and give the same tensors.
"""

from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model_export.errors import ExportError

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)
# (operator, input index) that the ONNX spec types as float32 only.
FLOAT32_ONLY = {("Resize", 2), ("Upsample", 1)}
# Operators that make floats out of no float input and name the type in an attribute this
# conversion does not rewrite: refused rather than silently left float32.
UNSUPPORTED = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "EyeLike",
    "Bernoulli",
    "Multinomial",
}
TAP = "parity_tap"  # the extra output of a tapped pixel graph


class _Names:
    """New value names, none used in the graph or given before."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.used = {v for n in graph.node for v in (*n.input, *n.output)}
        self.used |= {v.name for v in (*graph.input, *graph.output, *graph.initializer)}

    def __call__(self, stem: str) -> str:
        name, i = stem, 0
        while name in self.used:
            i += 1
            name = f"{stem}_{i}"
        self.used.add(name)
        return name


def _refuse_unsupported(model: onnx.ModelProto) -> None:
    if model.functions:
        raise ExportError("the graph has local functions; the fp16 conversion handles plain graphs only")
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise ExportError(
                f"node {node.name or node.op_type}: the {node.domain!r} domain's operators cannot be "
                "converted to fp16"
            )
        if node.op_type in UNSUPPORTED:
            raise ExportError(f"node {node.name or node.op_type}: {node.op_type} cannot be converted to fp16")
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ExportError(
                f"node {node.name or node.op_type}: {node.op_type} has subgraphs; the fp16 conversion "
                "handles plain graphs only"
            )


def _half(array: np.ndarray, what: str) -> np.ndarray:
    finite = array[np.isfinite(array)]
    if finite.size and float(np.abs(finite).max()) > FP16_MAX:
        raise ExportError(f"{what} holds values beyond float16's range (±{FP16_MAX:g})")
    return array.astype(np.float16)


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as e:  # onnx raises InferenceError and others
        raise ExportError(f"the fp32 graph does not pass shape inference: {e}") from None
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.value_info, *g.output)}
    types |= {i.name: i.data_type for i in g.initializer}
    return types


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The fp32 graph in float16 inside, its inputs' and outputs' dtypes kept; checked by
    onnx.checker (full check) before it is returned."""
    _refuse_unsupported(model)
    types = _value_types(model)
    model = copy.deepcopy(model)
    graph = model.graph
    uses: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name:
                uses[name].append((node, i))

    def fp32_only(name: str) -> bool:
        return bool(uses[name]) and all((n.op_type, i) in FLOAT32_ONLY for n, i in uses[name])

    # Constants: float16, unless float32 is all their uses take.
    for init in graph.initializer:
        if init.data_type == FLOAT and not fp32_only(init.name):
            init.CopyFrom(numpy_helper.from_array(_half(numpy_helper.to_array(init), init.name), init.name))
    for node in graph.node:
        if (
            node.op_type == "Constant"
            and types.get(node.output[0]) == FLOAT
            and not fp32_only(node.output[0])
        ):
            _set_value(node, _half(_constant_value(node), node.output[0]))
        elif node.op_type == "Cast" and helper.get_attribute_value(node.attribute[0]) == FLOAT:
            node.attribute[0].CopyFrom(helper.make_attribute("to", HALF))
        elif node.op_type == "ConstantOfShape" and types.get(node.output[0]) == FLOAT:
            value = _constant_value(node) if node.attribute else np.zeros(1, np.float32)  # the default
            _set_value(node, _half(value, node.output[0]))

    converted = {
        name
        for name, t in types.items()
        if t == FLOAT and not (fp32_only(name) and _is_constant(graph, name))
    }
    fresh = _Names(graph)
    nodes: list[onnx.NodeProto] = []
    # Float inputs enter through a Cast to float16.
    for value in graph.input:
        if value.type.tensor_type.elem_type == FLOAT and value.name in uses:
            inside = fresh(f"{value.name}::fp16")
            for node, i in uses[value.name]:
                node.input[i] = inside
            nodes.append(helper.make_node("Cast", [value.name], [inside], to=HALF, name=inside))
    for node in graph.node:
        for i, name in enumerate(node.input):
            if (node.op_type, i) in FLOAT32_ONLY and name in converted:  # computed: cast back
                back = fresh(f"{name}::fp32")
                nodes.append(helper.make_node("Cast", [name], [back], to=FLOAT, name=back))
                node.input[i] = back
        nodes.append(node)
    # Float outputs leave through a Cast back to float32.
    for value in graph.output:
        if value.type.tensor_type.elem_type == FLOAT:
            inside = fresh(f"{value.name}::fp16")
            for node in nodes:
                node.output[:] = [inside if o == value.name else o for o in node.output]
                node.input[:] = [inside if o == value.name else o for o in node.input]
            nodes.append(
                helper.make_node("Cast", [inside], [value.name], to=FLOAT, name=fresh(f"{value.name}::fp32"))
            )
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # float32 types of values that are float16 now: inferred again below
    return checked(model, "the fp16 graph")


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    """A Constant's or ConstantOfShape's value, whichever attribute holds it."""
    attr = node.attribute[0]
    if attr.name == "value":
        return np.asarray(numpy_helper.to_array(attr.t))
    return np.asarray(helper.get_attribute_value(attr), np.float32)  # value_float(s)


def _set_value(node: onnx.NodeProto, value: np.ndarray) -> None:
    del node.attribute[:]
    node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(value)))


def _is_constant(graph: onnx.GraphProto, name: str) -> bool:
    return any(i.name == name for i in graph.initializer) or any(
        n.op_type == "Constant" and n.output[0] == name for n in graph.node
    )


def checked(model: onnx.ModelProto, what: str) -> onnx.ModelProto:
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # ValidationError, InferenceError
        raise ExportError(f"onnx.checker rejected {what}: {str(e).splitlines()[0]}") from None
    return model


def interface_of(model: onnx.ModelProto) -> list[tuple[str, str, int, list[int | str]]]:
    """What a caller sees: each input and output with its name, dtype and dimensions."""
    initializers = {i.name for i in model.graph.initializer}
    found: list[tuple[str, str, int, list[int | str]]] = []
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for v in values:
            if v.name in initializers:
                continue
            dims: list[int | str] = [
                d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim
            ]
            found.append((kind, v.name, v.type.tensor_type.elem_type, dims))
    return found


def refuse_other_interface(reference: onnx.ModelProto, variant: onnx.ModelProto) -> None:
    """The variant must take and give exactly the tensors the fp32 graph does."""
    old, new = interface_of(reference), interface_of(variant)
    if old != new:
        raise ExportError(f"the fp16 graph's inputs and outputs differ from the fp32 graph's: {new} vs {old}")


def tapped(model: onnx.ModelProto) -> onnx.ModelProto:
    """The pixel graph with one more output, TAP (float32): the value its pixels are rounded from,
    (x - low) * 255 / (high - low) for the model's output x. Parity compares two pixel graphs there,
    in model units, where the uint8 output alone would hide errors under a level."""
    model = copy.deepcopy(model)
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def to_pixels(node: onnx.NodeProto) -> bool:  # Round -> Clip -> Cast(uint8)
        clips = consumers[node.output[0]]
        if len(clips) != 1 or clips[0].op_type != "Clip":
            return False
        return any(
            c.op_type == "Cast" and helper.get_attribute_value(c.attribute[0]) == TensorProto.UINT8
            for c in consumers[clips[0].output[0]]
        )

    rounds = [n for n in graph.node if n.op_type == "Round" and to_pixels(n)]
    if len(rounds) != 1:
        raise ExportError(
            f"not a pixel graph as gan-export writes them: {len(rounds)} Round -> Clip -> Cast(uint8) "
            "chains where one rounds the image to pixels"
        )
    graph.node.append(helper.make_node("Cast", [rounds[0].input[0]], [TAP], to=FLOAT, name=TAP))
    graph.output.append(helper.make_tensor_value_info(TAP, FLOAT, None))
    return model
