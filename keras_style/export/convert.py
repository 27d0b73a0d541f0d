"""Converts a Keras transformer network into TFLite models, one per quantization.

The route is the one that works for Keras 3 (see the project notes):
`keras.export.ExportArchive` writes a float32 SavedModel with one
`serving_default` signature, then `tf.lite.TFLiteConverter.from_saved_model`
converts it. The SavedModel takes one image, `[1, H, W, 3]` float32 in
[0, 255]: with H and W unknown for the dynamic model (CPU; callers use
`resize_tensor_input`), or fixed for GPU-delegate models, where the converter
folds every shape computation into constants.

Quantizations:

* `float32`: reference model.
* `float16`: float16 weights, float32 compute on CPU, native float16 on GPUs.
* `dynamic_int8`: int8 weights, activations quantized on the fly (no calibration).
* `int8`: full integer, calibrated on representative photos; float32 or
  uint8 input/output (`int8_io`).
* `int16x8`: int16 activations, int8 weights, calibrated; float32 input/output.

Full int8 first rewrites the network into a float-equivalent form that
quantizes well per tensor (`export_rewrite`: channel equalization before each
instance norm, a clip before the output tanh). Full int8 also keeps the output
head (last conv + tanh) in float: with both, a trained network goes from about
15 dB to about 30 dB PSNR against float32 (see `convert_model_with_recipe`).

Only builtin operators are allowed: SELECT_TF_OPS is never enabled and every
result is checked with `export_ops.check_builtin_ops`.
"""

import tempfile

import numpy as np

from keras_style.core import images
from keras_style.export import ops as export_ops
from keras_style.export import rewrite as export_rewrite

#: Quantization modes, in report order.
QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8", "int16x8")
#: Modes that need a representative (calibration) set.
CALIBRATED = ("int8", "int16x8")
#: Modes that get fixed-size models for GPU delegates.
GPU_QUANTIZATIONS = ("float32", "float16")
#: Input/output types offered for full-integer int8 models.
INT8_IO_TYPES = ("float32", "uint8")
#: Name of the single signature, its input and its output in every model.
SIGNATURE, INPUT_NAME, OUTPUT_NAME = "serving_default", "image", "stylized"
#: Conv blocks before the output head that full int8 keeps in float by default: with 2
#: (both upsampling blocks) the bundled styles reach 30 dB / SSIM 0.92 on held-out photos.
INT8_FLOAT_BLOCKS = 2
#: Whether full int8 keeps a clip output head in float by default (tanh and residual heads
#: always are): quantized, it costs the bundled styles 0.1-0.6 dB and saves 19% of the time.
INT8_FLOAT_CLIP_HEAD = False
#: Reconversions of an int8 model that move the ops XNNPACK declines into float.
XNNPACK_RETRIES = 2
#: Calibration photos used for the channel statistics of the rewrite.
REWRITE_PHOTOS = 32


def validate_quantizations(names):
    """Returns `names` as a tuple in report order, or raises ValueError on an unknown mode."""
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in QUANTIZATIONS]
    if unknown or not names:
        raise ValueError(
            f"Unknown quantization {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(QUANTIZATIONS)}"
        )
    return tuple(q for q in QUANTIZATIONS if q in names)


def validate_sizes(sizes):
    """Returns the fixed sizes as a sorted tuple of ints >= 16, or raises ValueError."""
    try:
        sizes = tuple(sorted({int(s) for s in sizes}))
    except (TypeError, ValueError) as e:
        raise ValueError(f"Sizes must be integers (pixels); got {sizes!r}") from e
    if not sizes or sizes[0] < 16 or sizes[-1] > 4096:
        raise ValueError(f"Sizes must be between 16 and 4096 pixels; got {sizes!r}")
    return sizes


def load_photos(files, size):
    """Loads image files as one float32 batch `[N, size, size, 3]` in [0, 255]."""
    return np.stack([images.center_square(images.load_image(f), size) for f in files])


def write_float_saved_model(model, directory, size=None):
    """Writes the float32 SavedModel the converter reads.

    Args:
        model: the Keras network, `[N, H, W, 3]` float32 [0, 255] in and out.
        directory: where to write (created).
        size: None for dynamic H and W, else the fixed square side in pixels.
    """
    import keras
    import tensorflow as tf

    spec = tf.TensorSpec([1, size, size, 3], tf.float32, name=INPUT_NAME)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE,
        lambda image: {OUTPUT_NAME: model(image, training=False)},
        input_signature=[spec],
    )
    archive.write_out(str(directory), verbose=False)


def _representative(calibration):
    def generate():
        for image in calibration:
            yield {INPUT_NAME: image[None].astype(np.float32)}

    return generate


def _configure(converter, quantization, calibration, int8_io):
    import tensorflow as tf

    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    converter.target_spec.supported_ops = [builtins]
    if quantization == "float32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        converter.representative_dataset = _representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.uint8 if int8_io == "uint8" else tf.float32
        converter.inference_input_type = converter.inference_output_type = io_type
    elif quantization == "int16x8":
        # TFLITE_BUILTINS as well: the int32 shape arithmetic of the dynamic
        # model (FLOOR_DIV in PadToMultiple) has no 16x8 kernel and must stay
        # an ordinary builtin; every float op that has one is still quantized.
        converter.representative_dataset = _representative(calibration)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
            builtins,
        ]


def _calibrated_int8(converter, calibration):
    """Runs the converter's calibration only: a float model annotated with activation ranges."""
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.representative_dataset = _representative(calibration)
    # The route tf.lite.experimental.QuantizationDebugger takes for selective
    # quantization: calibrate, then quantize with a denylist.
    converter._experimental_calibrate_only = True
    return converter.convert()


def _tensor_names(tflite_model):
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAs(tflite_model, 0).Subgraphs(0)
    return [graph.Tensors(i).Name().decode() for i in range(graph.TensorsLength())]


def _selective_int8(converter, calibration, int8_io, float_layers):
    """Full-integer int8 conversion that keeps the ops of `float_layers` in float.

    Returns:
        `(tflite bytes, names of the tensors kept in float)`.
    """
    import tensorflow as tf
    from tensorflow.lite.python import convert as tf_convert

    calibrated = _calibrated_int8(converter, calibration)
    names = _tensor_names(calibrated)
    nodes = export_rewrite.tensor_names_of_layers(names, float_layers)
    io_type = tf.uint8 if int8_io == "uint8" else tf.float32
    for _ in range(XNNPACK_RETRIES + 1):
        content = tf_convert.mlir_quantize(
            calibrated,
            input_data_type=io_type,
            output_data_type=io_type,
            denylisted_nodes=nodes or None,
        )
        if not _xnnpack_graph(float_layers):
            break
        declined = _declined_int8_ops(content, set(names) - set(nodes))
        if not declined:
            break
        nodes = [*nodes, *declined]
    return content, nodes


def _xnnpack_graph(float_layers):
    """Whether the converted network is the XNNPACK graph (its float scope is in `float_layers`)."""
    from keras_style.export.graph import FLOAT_SCOPE

    return FLOAT_SCOPE in float_layers


def _declined_int8_ops(content, candidates):
    """Tensors of int8 ops that XNNPACK left outside (they then stay float, inside it).

    XNNPACK declines, for example, an int8 ADD or SUB whose input and output
    scales differ by more than 2**8, which calibration can produce.
    """
    from keras_style.export import delegate as export_delegate

    outside = export_delegate.outside_tensor_names(content, export_delegate.test_shape(None))
    # The quantizer appends a digit to the int8 twin of a model output ("...:0" -> "...:01").
    return [n if n in candidates else n[:-1] for n in outside if {n, n[:-1]} & candidates]


def convert_saved_model(
    saved_model_dir, quantization, calibration=None, int8_io="float32", float_layers=()
):
    """Converts a float32 SavedModel to TFLite with builtin operators only.

    Args:
        saved_model_dir: a SavedModel from `write_float_saved_model`.
        quantization: one of `QUANTIZATIONS`.
        calibration: float32 `[N, H, W, 3]` photos in [0, 255]; required for
            `CALIBRATED` modes, ignored otherwise.
        int8_io: input/output type of `int8` models: "float32" or "uint8".
        float_layers: Keras layer names whose ops an `int8` model keeps in
            float (DEQUANTIZE/QUANTIZE around them); ignored by other modes.

    Returns:
        The .tflite flatbuffer as bytes.

    Raises:
        ValueError: on an unknown mode or I/O type, or missing calibration photos.
        ExportError: if conversion fails or produces a non-builtin operator.
    """
    return _convert_saved_model(saved_model_dir, quantization, calibration, int8_io, float_layers)[
        0
    ]


def _convert_saved_model(saved_model_dir, quantization, calibration, int8_io, float_layers):
    """`convert_saved_model`, also returning the tensor names kept in float."""
    import tensorflow as tf

    (quantization,) = validate_quantizations([quantization])
    if int8_io not in INT8_IO_TYPES:
        raise ValueError(f"int8_io must be one of {INT8_IO_TYPES}; got {int8_io!r}")
    if quantization in CALIBRATED and (calibration is None or len(calibration) == 0):
        raise ValueError(f"{quantization} quantization needs calibration photos")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    nodes = []
    try:
        if quantization == "int8" and float_layers:
            tflite_model, nodes = _selective_int8(converter, calibration, int8_io, float_layers)
        else:
            _configure(converter, quantization, calibration, int8_io)
            tflite_model = converter.convert()
    except Exception as e:  # ConverterError and friends: report the cause, not a trace
        raise export_ops.ExportError(
            f"TFLite conversion ({quantization}) failed with builtin ops only: {e}"
        ) from e
    export_ops.check_builtin_ops(tflite_model, what=f"The {quantization} model")
    return tflite_model, nodes


def _fit_calibration(calibration, size):
    if size is not None and calibration is not None and calibration.shape[1:3] != (size, size):
        return np.stack([images.resize(image, (size, size)) for image in calibration])
    return calibration


def prepare_for_quantization(
    model,
    quantization,
    calibration,
    rewrite=True,
    float_blocks=INT8_FLOAT_BLOCKS,
    float_clip_head=INT8_FLOAT_CLIP_HEAD,
):
    """The network a mode converts, and the recipe applied to it.

    Full int8 gets `export_rewrite.rewrite_for_quantization` (float
    equivalent) and keeps the `float_blocks` conv blocks before the output
    head in float, and the head itself unless it is a clip head and
    `float_clip_head` is False (`export_rewrite.float_head_layers`). int16x8 does not need
    it (16-bit activations) and is converted as it is: equalized channels
    fill the calibrated range, which costs headroom on inputs unlike the
    calibration photos.

    Returns:
        `(network, float_layers, recipe)`: `recipe` is a JSON-ready dict for
        the report (empty for modes that convert the network as it is).
    """
    if quantization != "int8" or not rewrite or calibration is None:
        return model, (), {}
    prepared, info = export_rewrite.rewrite_for_quantization(model, calibration[:REWRITE_PHOTOS])
    recipe = {"rewrite": info}
    float_layers = ()
    if quantization == "int8":
        float_layers = tuple(
            export_rewrite.float_head_layers(model, float_blocks, clip_head=float_clip_head)
        )
        recipe["float_layers"] = list(float_layers)
        recipe["float_layers_why"] = (
            f"the {float_blocks} conv block(s) before the output head, and the head unless "
            "it is a clip head: on few channels, their int8 rounding reaches the output "
            "nearly unchanged (a clip head's int8 steps are about one grey level)"
        )
    return prepared, float_layers, recipe


def convert_model_with_recipe(
    model,
    quantization,
    size=None,
    calibration=None,
    int8_io="float32",
    rewrite=True,
    float_blocks=INT8_FLOAT_BLOCKS,
    xnnpack=True,
    float_clip_head=INT8_FLOAT_CLIP_HEAD,
):
    """Converts a Keras network in one step and says how it was prepared.

    Args:
        model: the Keras network (not modified).
        quantization: one of `QUANTIZATIONS`.
        size: None for the dynamic-size model, else the fixed square side.
        calibration: photos for `CALIBRATED` modes (resized to `size` if fixed).
        int8_io: "float32" or "uint8" for `int8`.
        rewrite: apply the quantization recipe to `int8` (False
            converts the network as it is, for comparisons).
        float_blocks: conv blocks before the output head that `int8` keeps in
            float (see `prepare_for_quantization`).
        xnnpack: convert `export_graph.xnnpack_copy` of the network, which the
            XNNPACK delegate runs in one partition (its dynamic-size model
            takes sides that are multiples of 4); False converts the Keras
            graph as it is (the export before that rewrite, for comparisons).
        float_clip_head: `int8` keeps a clip output head in float too.

    Returns:
        `(tflite bytes, recipe dict)`; the recipe also lists `float_tensors`,
        the converted tensors kept in float, and `graph: "keras"` when the
        Keras graph was converted as it is.
    """
    calibration = _fit_calibration(calibration, size)
    network, float_layers, recipe = prepare_for_quantization(
        model, quantization, calibration, rewrite, float_blocks, float_clip_head
    )
    if not xnnpack:
        recipe = {**recipe, "graph": "keras"}
    else:
        from keras_style.export import graph as export_graph  # imports keras: only when converting

        network = export_graph.xnnpack_copy(network)
        if float_layers:
            float_layers = (*float_layers, export_graph.FLOAT_SCOPE)
            recipe["float_scope"] = (
                f"ops under the {export_graph.FLOAT_SCOPE!r} name scope: the instance-norm "
                "scale from the statistics ([1, 1, 1, C]) and the offset of the norms before a "
                "residual sum"
            )
    with tempfile.TemporaryDirectory(prefix="keras_style_export_") as tmp:
        write_float_saved_model(network, tmp, size=size)
        content, nodes = _convert_saved_model(tmp, quantization, calibration, int8_io, float_layers)
    if float_layers:
        recipe["float_tensors"] = len(nodes)
    return content, recipe


def convert_model(
    model, quantization, size=None, calibration=None, int8_io="float32", xnnpack=True
):
    """Converts a Keras network in one step (temporary SavedModel, then TFLite).

    Args:
        model: the Keras network.
        quantization: one of `QUANTIZATIONS`.
        size: None for the dynamic-size model, else the fixed square side.
        calibration: photos for `CALIBRATED` modes (resized to `size` if fixed).
        int8_io: "float32" or "uint8" for `int8`.
        xnnpack: convert the XNNPACK form of the graph (see `convert_model_with_recipe`).

    Returns:
        The .tflite flatbuffer as bytes.
    """
    return convert_model_with_recipe(
        model, quantization, size, calibration, int8_io, xnnpack=xnnpack
    )[0]
