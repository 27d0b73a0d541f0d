"""How the LiteRT interpreter splits a .tflite model between the XNNPACK delegate and itself.

`ai_edge_litert.interpreter.Interpreter` applies the XNNPACK delegate by
default. The delegate claims the nodes it supports; the interpreter then
replaces each connected run of claimed nodes by one DELEGATE node (a
*partition*) and runs every other node on its own reference kernels, which
is where a CPU model loses most of its speed. The interpreter logs the split
only in debug builds, so this module reads it from the interpreter's node
list after delegation (`_get_ops_details()`): every DELEGATE node is one
partition whose inputs and outputs are its boundary tensors; walking back
from its outputs to its inputs through the original nodes finds the nodes it
replaced. Original nodes that no partition covers run outside the delegate.
"""

import collections

import numpy as np


def _interpreter(tflite_model, shape, num_threads):
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(tflite_model, (bytes, bytearray)):
        interpreter = Interpreter(model_content=bytes(tflite_model), num_threads=num_threads)
    else:
        interpreter = Interpreter(model_path=str(tflite_model), num_threads=num_threads)
    detail = interpreter.get_input_details()[0]
    dynamic = bool(np.any(np.asarray(detail["shape_signature"]) < 0))
    if shape is not None and dynamic:
        if tuple(detail["shape"]) != tuple(shape):
            interpreter.resize_tensor_input(detail["index"], list(shape), strict=True)
    interpreter.allocate_tensors()
    return interpreter


def _covered(nodes, delegate, producer):
    """Indices of the original nodes that one DELEGATE node replaced."""
    boundary = {int(t) for t in delegate["inputs"]}
    covered, stack = set(), [int(t) for t in delegate["outputs"]]
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if tensor in boundary or node is None or node in covered:
            continue
        covered.add(node)
        stack.extend(int(t) for t in nodes[node]["inputs"] if t >= 0)
    return covered


def _split(tflite_model, shape, num_threads):
    """(interpreter, partitions as node-index sets, original nodes outside every partition)."""
    interpreter = _interpreter(tflite_model, shape, num_threads)
    nodes = interpreter._get_ops_details()
    original = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {int(t): n["index"] for n in original for t in n["outputs"] if t >= 0}
    partitions = [_covered(nodes, n, producer) for n in nodes if n["op_name"] == "DELEGATE"]
    inside = set().union(*partitions)
    outside = [n for n in original if n["index"] not in inside]
    return interpreter, partitions, original, outside


def delegation(tflite_model, shape=None, num_threads=1):
    """The XNNPACK partitions of a model and the operators that run outside them.

    Args:
        tflite_model: .tflite bytes or path.
        shape: input shape to allocate a dynamic-size model at (e.g.
            `[1, 384, 384, 3]`; fixed-size models keep theirs); None keeps
            the model's own.
        num_threads: interpreter threads (does not change the split).

    Returns:
        A JSON-ready dict: `partitions` (DELEGATE nodes), `nodes_per_partition`,
        `nodes` (operators in the model), `delegated_nodes` and `outside`,
        `{operator name: count}` of the nodes the interpreter runs itself
        (empty when XNNPACK runs the whole model).
    """
    _, partitions, original, outside = _split(tflite_model, shape, num_threads)
    counts = collections.Counter(n["op_name"] for n in outside)
    return {
        "partitions": len(partitions),
        "nodes_per_partition": [len(p) for p in partitions],
        "nodes": len(original),
        "delegated_nodes": len(original) - len(outside),
        "outside": dict(sorted(counts.items())),
    }


def outside_tensor_names(tflite_model, shape=None):
    """Names of the output tensors of the nodes that run outside XNNPACK (see `delegation`)."""
    interpreter, _, _, outside = _split(tflite_model, shape, 1)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    return sorted({names[int(t)] for n in outside for t in n["outputs"] if t >= 0})


def summary(info):
    """One line for reports: `1 partition, nothing outside` or what runs outside."""
    count = info["partitions"]
    text = f"{count} XNNPACK partition{'s' if count != 1 else ''}"
    outside = info["outside"]
    if not outside:
        return text + ", nothing outside"
    ops = ", ".join(f"{n} x{c}" for n, c in outside.items())
    return f"{text}; outside: {ops}"


def test_shape(size=None, default=64):
    """The input shape at which a model is checked: its fixed size, else `default` pixels."""
    side = default if size is None else size
    return (1, side, side, 3)
