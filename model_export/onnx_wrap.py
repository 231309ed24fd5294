"""A foreign ONNX generator or upscaler wrapped, in ONNX itself, with the pre- and post-processing a
native export puts around a generator (model_export.pixel_graphs), so that the published graph
speaks this repository's interface:

    generate: z (N, latent) float32 [, labels (N,) int64]  ->  user graph  ->  image (N, H, W, C) uint8
    upscale:  image (N, h, w, C) uint8  ->  user graph  ->  upscaled (N, h*s, w*s, C) uint8

The nodes added: casts to and from the user graph's own dtypes, labels as indices or one-hot,
the layout (NCHW or NHWC), the value range, rounding (half to even, as torch.round), clamping,
and the cast to uint8. With pixels=False the graph stops at the float output (N, C, H, W) in
model units, which parity compares with the original. The user graph's inputs are checked first:
their count, dtypes, ranks, static sizes against what was declared, and a dynamic batch axis.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model_export.adopt_interface import Interface
from model_export.errors import ExportError

MIN_ADOPTED_OPSET = 13  # Round, Clip with min/max inputs, OneHot, Cast as the wrapper uses them

FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
INTS = (TensorProto.INT64, TensorProto.INT32)
INTERNAL = "adopted::"  # prefix of the user graph's renamed inputs and output


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    """A value's dimensions: an int when static, its name when symbolic, None when unknown."""
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]


def _type_name(elem: int) -> str:
    return str(TensorProto.DataType.Name(elem)).lower()


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def prepared(model: onnx.ModelProto) -> onnx.ModelProto:
    """At least opset 13 (what the wrapper's nodes need), converted when older."""
    opset = default_opset(model)
    if opset >= MIN_ADOPTED_OPSET:
        return model
    try:
        return onnx.version_converter.convert_version(model, 17)
    except Exception as e:
        raise ExportError(
            f"the graph's opset {opset} is older than {MIN_ADOPTED_OPSET} and cannot be converted: {e}"
        ) from None


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def check_interface(model: onnx.ModelProto, interface: Interface) -> None:
    """The user graph's inputs and output against the declared interface: one-line errors."""
    inputs = graph_inputs(model)
    expected = 2 if interface.task == "generate" and interface.classes else 1
    if len(inputs) != expected:
        what = {
            1: "one input (z)" if interface.task == "generate" else "one input (the image)",
            2: "two inputs (z, labels)",
        }
        raise ExportError(
            f"the graph takes {len(inputs)} input(s) ({', '.join(i.name for i in inputs)}); "
            f"a{' conditional' if expected == 2 else 'n'} "
            f"{interface.task} model as declared takes {what[expected]}"
        )
    if not model.graph.output:
        raise ExportError("the graph has no output")
    first = inputs[0]
    elem, dims = first.type.tensor_type.elem_type, _dims(first)
    if elem not in FLOATS[:2]:
        raise ExportError(
            f"input {first.name!r} is {_type_name(elem)}: adopted models take float32 or float16 inputs"
        )
    if isinstance(dims[0] if dims else None, int):
        raise ExportError(
            f"input {first.name!r} has a fixed batch size of "
            f"{dims[0]}: export the graph with a dynamic batch axis"
        )
    if interface.task == "generate":
        if len(dims) != 2:
            raise ExportError(f"input {first.name!r} has shape {dims}: z is (batch, latent)")
        if isinstance(dims[1], int) and dims[1] != interface.latent_size:
            raise ExportError(
                f"input {first.name!r} takes latents of size "
                f"{dims[1]}, not {interface.latent_size} as declared"
            )
        if expected == 2:
            _check_labels(inputs[1], interface)
    else:
        if len(dims) != 4:
            raise ExportError(
                f"input {first.name!r} has shape {dims}: an upscaler "
                "takes (batch, C, H, W) or (batch, H, W, C)"
            )
        sides = dims[2:] if interface.layout == "nchw" else dims[1:3]
        if any(isinstance(s, int) for s in sides):
            raise ExportError(
                f"input {first.name!r} has a fixed image size {sides}: an upscaler must take any size"
            )
    out = model.graph.output[0]
    out_elem, out_dims = out.type.tensor_type.elem_type, _dims(out)
    if out_elem not in FLOATS[:2]:
        raise ExportError(
            f"output {out.name!r} is {_type_name(out_elem)}: adopted models return float32 or float16 images"
        )
    if out_dims and len(out_dims) != 4:
        raise ExportError(f"output {out.name!r} has shape {out_dims}: not an image batch (4 dimensions)")


def _check_labels(labels: onnx.ValueInfoProto, interface: Interface) -> None:
    elem, dims = labels.type.tensor_type.elem_type, _dims(labels)
    if interface.label_format == "index":
        if elem not in INTS or len(dims) != 1:
            raise ExportError(
                f"input {labels.name!r} is {_type_name(elem)} "
                f"{dims}: index labels are int64 or int32 (batch,); "
                "one-hot labels need --label-format onehot"
            )
    elif (
        elem not in FLOATS[:2]
        or len(dims) != 2
        or (isinstance(dims[1], int) and dims[1] != interface.classes)
    ):
        raise ExportError(
            f"input {labels.name!r} is {_type_name(elem)} {dims}: "
            f"one-hot labels are float (batch, {interface.classes})"
        )


class _Builder:
    """Nodes and constants added to the graph, with unique names."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.count = 0
        self.nodes: list[onnx.NodeProto] = []

    def name(self, stem: str) -> str:
        self.count += 1
        return f"wrap::{stem}_{self.count}"

    def const(self, value: Any, dtype: type = np.float32) -> str:
        name = self.name("const")
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        out = output or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(op_type), **attrs))
        return out


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Every use of a value name in the graph (and in its subgraphs, which may read outer values
    or return them)."""
    for info in [*graph.value_info, *graph.initializer, *graph.output]:
        if info.name == old:
            info.name = new
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename(sub, old, new)


def _value_names(graph: onnx.GraphProto) -> set[str]:
    names = {i.name for i in [*graph.input, *graph.output, *graph.initializer, *graph.value_info]}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                names |= _value_names(sub)
    return names


def compose(raw: onnx.ModelProto, interface: Interface, pixels: bool, output_name: str) -> onnx.ModelProto:
    """The user graph with this repository's interface around it (see the module's docstring)."""
    model = prepared(copy.deepcopy(raw))
    check_interface(model, interface)
    graph = model.graph
    inputs = graph_inputs(model)
    out_name = graph.output[0].name
    # The user's inputs and output become internal names, and so does any value of theirs named
    # as ours are (z, labels, image, upscaled): ours cannot clash with theirs.
    ours = {"z", "labels", "image", output_name}
    for name in [*(i.name for i in inputs), out_name]:
        _rename(graph, name, INTERNAL + name)
    for name in ours & _value_names(graph):
        _rename(graph, name, INTERNAL + name)
    b = _Builder(graph)
    new_inputs: list[onnx.ValueInfoProto] = []
    if interface.task == "generate":
        z, z_type = inputs[0], inputs[0].type.tensor_type.elem_type
        new_inputs.append(
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", interface.latent_size])
        )
        b.op("Cast", ["z"], INTERNAL + z.name, to=z_type)
        if interface.classes:
            labels = inputs[1]
            label_type = labels.type.tensor_type.elem_type
            new_inputs.append(helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch"]))
            if interface.label_format == "onehot":
                onehot = b.op(
                    "OneHot",
                    ["labels", b.const(interface.classes, np.int64), b.const([0, 1], np.float32)],
                    axis=-1,
                )
                b.op("Cast", [onehot], INTERNAL + labels.name, to=label_type)
            else:
                b.op("Cast", ["labels"], INTERNAL + labels.name, to=label_type)
        low, high = interface.output_range
    else:
        image = inputs[0]
        channels = "channels"
        new_inputs.append(
            helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", "height", "width", channels])
        )
        x = b.op("Div", [b.op("Cast", ["image"], to=TensorProto.FLOAT), b.const(255.0)])
        in_low, in_high = interface.input_range
        x = b.op("Add", [b.op("Mul", [x, b.const(in_high - in_low)]), b.const(in_low)])
        if interface.layout == "nchw":
            x = b.op("Transpose", [x], perm=[0, 3, 1, 2])
        b.op("Cast", [x], INTERNAL + image.name, to=image.type.tensor_type.elem_type)
        low, high = 0.0, 1.0
    feeding, b.nodes = b.nodes, []  # these run before the user's graph, the rest after it
    # Post: the user's output -> (N, C, H, W) float32 in model units [-> (N, H, W, C) uint8].
    y = b.op("Cast", [INTERNAL + out_name], to=TensorProto.FLOAT)
    if interface.layout == "nhwc":
        y = b.op("Transpose", [y], perm=[0, 3, 1, 2])
    if interface.task == "upscale":
        out_low, out_high = interface.output_range
        y = b.op("Div", [b.op("Sub", [y, b.const(out_low)]), b.const(out_high - out_low)])
    if pixels:
        y = b.op("Mul", [b.op("Sub", [y, b.const(low)]), b.const(255.0 / (high - low))])
        y = b.op("Clip", [b.op("Round", [y]), b.const(0.0), b.const(255.0)])
        y = b.op("Transpose", [b.op("Cast", [y], to=TensorProto.UINT8)], perm=[0, 2, 3, 1])
        result = helper.make_tensor_value_info(output_name, TensorProto.UINT8, None)
    else:
        result = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, None)
    b.op("Identity", [y], output_name)
    reading = b.nodes
    user_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*feeding, *user_nodes, *reading])
    for value in inputs:
        graph.input.remove(value)
    graph.input.extend(new_inputs)
    del graph.output[:]
    graph.output.append(result)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise ExportError(f"the wrapped graph does not check: {e}") from None
    return model


def graph_precision(model: onnx.ModelProto) -> str:
    """'fp16' when the graph takes or gives float16 (its weights are half), else 'fp32'."""
    values = [*graph_inputs(model), *model.graph.output]
    return "fp16" if any(v.type.tensor_type.elem_type == TensorProto.FLOAT16 for v in values) else "fp32"
