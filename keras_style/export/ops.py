"""Reads the operator list of a .tflite flatbuffer and checks it for deployment.

Two checks guard every converted model:

* `check_builtin_ops`: only TFLite builtin operators. A Flex (SELECT_TF_OPS) or
  custom operator would make the file fail to load in LiteRT and in mobile
  runtimes without the Flex delegate, so the export fails instead.
* `gpu_delegate_issues`: every operator and tensor must be something the TFLite
  GPU delegate runs. The rules mirror the delegate's own compatibility checker
  (`tensorflow/lite/tools/versioning/gpu_compatibility.cc`): an allow-list of
  operators plus the constraints our network can hit (static shapes, constant
  axes/sizes/paddings, REFLECT mirror padding, no int16 tensors).

The model is parsed with the flatbuffer schema shipped in `ai_edge_litert`
rather than by scraping analyzer text.
"""

import numpy as np
from ai_edge_litert import schema_py_generated as schema

_OP_NAMES = {
    code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}
_TYPE_NAMES = {
    code: name for name, code in vars(schema.TensorType).items() if not name.startswith("_")
}

#: Operators the TFLite GPU delegate (OpenCL/OpenGL/Metal) accepts in float
#: models, from its compatibility checker. SHAPE is deliberately absent: it
#: appears only when H and W are dynamic and then falls back to the CPU.
GPU_DELEGATE_OPS = frozenset(
    """
    ABS ADD AVERAGE_POOL_2D CAST CEIL CONCATENATION CONV_2D COS DENSIFY DEPTHWISE_CONV_2D
    DEPTH_TO_SPACE DEQUANTIZE DIV ELU EQUAL EXP FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER
    GELU GREATER GREATER_EQUAL HARD_SWISH LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGISTIC
    MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 POW PRELU
    QUANTIZE REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR
    RESIZE_NEAREST_NEIGHBOR RSQRT SELECT_V2 SIGN SIN SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V
    SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE SUB SUM TANH TILE TRANSPOSE TRANSPOSE_CONV
    """.split()  # noqa: SIM905  (a word list reads better than 70 quoted names)
)

#: Operators whose given input (by index) must be a constant for the GPU delegate.
_GPU_CONST_INPUTS = {
    "MEAN": 1,
    "SUM": 1,
    "REDUCE_MAX": 1,
    "REDUCE_MIN": 1,
    "REDUCE_PROD": 1,
    "PAD": 1,
    "PADV2": 1,
    "MIRROR_PAD": 1,
    "RESIZE_NEAREST_NEIGHBOR": 1,
    "RESIZE_BILINEAR": 1,
}


class ExportError(RuntimeError):
    """A converted model is not deployable (Flex op, GPU-incompatible op, failed check)."""


def _model(tflite_model):
    if isinstance(tflite_model, (bytes, bytearray)):
        buf = bytes(tflite_model)
    else:
        with open(tflite_model, "rb") as f:
            buf = f.read()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError("Not a TFLite flatbuffer (missing the TFL3 identifier)")
    return schema.Model.GetRootAs(buf, 0)


def _op_name(model, op_code_index):
    code = model.OperatorCodes(op_code_index)
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == schema.BuiltinOperator.CUSTOM:
        custom = code.CustomCode()
        return "CUSTOM:" + (custom.decode() if custom else "?")
    return _OP_NAMES.get(builtin, f"UNKNOWN_{builtin}")


def _operators(model):
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            yield graph, op, _op_name(model, op.OpcodeIndex())


def operator_names(tflite_model):
    """Returns the sorted, unique operator names of a .tflite model (bytes or path).

    Builtins appear by name (`CONV_2D`); custom and Flex operators as
    `CUSTOM:<code>` (`CUSTOM:FlexSaturateCast`).
    """
    return sorted({name for _, _, name in _operators(_model(tflite_model))})


def non_builtin_ops(tflite_model):
    """Returns the custom or Flex operator names in a model (empty when all are builtins)."""
    return [name for name in operator_names(tflite_model) if name.startswith("CUSTOM:")]


def check_builtin_ops(tflite_model, what="model"):
    """Raises `ExportError` unless every operator is a TFLite builtin.

    Args:
        tflite_model: .tflite bytes or path.
        what: the model's name, for the error message.
    """
    bad = non_builtin_ops(tflite_model)
    if bad:
        flex = ", ".join(name.removeprefix("CUSTOM:") for name in bad)
        raise ExportError(
            f"{what} contains non-builtin operators ({flex}). Flex/custom ops need the TF Select "
            "delegate, which LiteRT and most mobile runtimes lack; rewrite the layer that "
            "produces them with builtin-convertible ops."
        )


def _is_constant(model, graph, tensor_index):
    if tensor_index < 0:
        return False
    buffer = model.Buffers(graph.Tensors(tensor_index).Buffer())
    return buffer is not None and (buffer.DataLength() > 0 or buffer.Size() > 0)


def _tensor_issues(graph, index):
    """Yields (kind, tensor description) pairs for GPU-incompatible tensor properties."""
    tensor = graph.Tensors(index)
    name = tensor.Name().decode()
    signature = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else None
    if signature is not None and np.any(signature < 0):
        yield "dynamic shapes", f"{name!r} {signature.tolist()}"
    if tensor.ShapeLength() > 4:
        yield "rank > 4", f"{name!r} rank {tensor.ShapeLength()}"
    if tensor.Type() in (schema.TensorType.INT16, schema.TensorType.INT64):
        yield f"type {_TYPE_NAMES[tensor.Type()]}", repr(name)


def _op_issues(model, graph, op, name):
    if name not in GPU_DELEGATE_OPS:
        return [f"operator {name} is not supported by the GPU delegate"]
    issues = []
    const_input = _GPU_CONST_INPUTS.get(name)
    if const_input is not None and not _is_constant(model, graph, op.Inputs(const_input)):
        issues.append(f"{name} needs a constant input #{const_input} (axes, size or paddings)")
    if name == "MIRROR_PAD":
        options = schema.MirrorPadOptions()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        if options.Mode() != schema.MirrorPadMode.REFLECT:
            issues.append("MIRROR_PAD supports REFLECT mode only on the GPU delegate")
    return issues


def gpu_delegate_issues(tflite_model):
    """Lists why a model would not run entirely on the TFLite GPU delegate.

    Args:
        tflite_model: .tflite bytes or path.

    Returns:
        A sorted list of human-readable problems; empty when every operator and
        tensor is GPU-delegate compatible.
    """
    model = _model(tflite_model)
    issues, tensors = set(), {}
    for graph, op, name in _operators(model):
        issues.update(_op_issues(model, graph, op, name))
        for index in list(op.InputsAsNumpy()) + list(op.OutputsAsNumpy()):
            if index >= 0:
                for kind, what in _tensor_issues(graph, int(index)):
                    tensors.setdefault(kind, set()).add(what)
    for kind, names in tensors.items():
        issues.add(f"{len(names)} tensors with {kind}, e.g. {min(names)}")
    return sorted(issues)


def check_gpu_delegate_ops(tflite_model, what="model"):
    """Raises `ExportError` if `gpu_delegate_issues` finds anything."""
    issues = gpu_delegate_issues(tflite_model)
    if issues:
        raise ExportError(f"{what} is not GPU-delegate compatible: " + "; ".join(issues))
