"""`export_tflite`: verified, ready-to-ship TFLite files of a trained network, with a report.

One dynamic-size model per quantization (CPU; resize the input with
`resize_tensor_input`) plus fixed-size float models for GPU delegates, each
checked for builtin-only operators (and GPU-delegate operators where it
matters), run in LiteRT, compared with the Keras output, timed, and described
by a model card; `report.json` and `report.md` sum up what each file costs in
size, quality and speed. The output folder is replaced atomically
(`staging`); `saved_model` is the TensorFlow Serving export.
"""

import dataclasses
import os
import platform
from pathlib import Path

import numpy as np

from keras_style.core import images, jsonio
from keras_style.export import convert as export_convert
from keras_style.export import delegate as export_delegate
from keras_style.export import ops as export_ops
from keras_style.export import verify as export_verify
from keras_style.export.convert import GPU_QUANTIZATIONS, QUANTIZATIONS
from keras_style.export.model_source import as_model, check_model_file, describe_model
from keras_style.export.ops import ExportError
from keras_style.export.staging import check_out_dir, staged_dir

#: Default fixed sizes of the GPU-delegate models.
DEFAULT_SIZES = (256, 384, 512)


#: Minimum number of calibration photos for full-integer quantization.
MIN_CALIBRATION_PHOTOS = 100


_TFLITE_MARKER = "report.json"


def _variants(quantizations, sizes):
    dynamic = [(q, None) for q in quantizations]
    fixed = [(q, s) for q in quantizations if q in GPU_QUANTIZATIONS for s in sizes]
    return dynamic + fixed


def variant_name(quantization, size=None):
    """File stem of a variant: `float16` (dynamic size) or `float16_384` (fixed 384 x 384)."""
    return quantization if size is None else f"{quantization}_{size}"


def _photo_sets(calibration_dir, test_dir, num_calibration, min_calibration, num_test, needs_cal):
    """Chooses calibration and test photo files (disjoint when they share a folder)."""
    calibration, test = [], []
    if needs_cal:
        if calibration_dir is None:
            raise ValueError("int8 and int16x8 quantization need calibration_dir (photos)")
        files = images.list_image_files(calibration_dir)
        if len(files) < min_calibration:
            raise ValueError(
                f"{calibration_dir} holds {len(files)} photos; full-integer calibration needs "
                f"at least {min_calibration}"
            )
        files = [files[i] for i in np.random.default_rng(0).permutation(len(files))]
        calibration = files[:num_calibration]
    source = test_dir or calibration_dir
    if num_test > 0:
        if source is None:
            raise ValueError("Verification needs photos: pass test_dir or calibration_dir")
        pool = [f for f in images.list_image_files(source) if f not in set(calibration)]
        if not pool:
            raise ValueError(f"No test photos left in {source} after taking calibration photos")
        test = pool[-num_test:]
    return calibration, test


def _option(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class TFLiteOptions:
    """What `export_tflite` converts, how it calibrates, and how it verifies and times.

    The fields are validated and normalized on construction (lists become
    sorted tuples); `export.convert_tflite` takes its flags' defaults and help
    from `dataclasses.fields(TFLiteOptions)`, so the two cannot drift.

    Attributes:
        quantizations: modes from `QUANTIZATIONS`; each gets a dynamic-size model.
        sizes: square sides of the fixed-size GPU models (float32/float16) and
            the sizes at which every model is verified and timed.
        calibration_dir: photos for int8/int16x8 calibration (and for testing
            when `test_dir` is None).
        num_calibration: calibration photos used (a fixed random sample).
        min_calibration: fewer photos than this in `calibration_dir` is an error.
        calibration_size: square side the calibration photos are cropped to.
        int8_io: "float32" or "uint8" input/output for the `int8` model.
        test_dir: photos to verify on (default: `calibration_dir`, disjoint from
            the calibration sample).
        num_test_photos: test photos per size; 0 skips quality checks.
        threads: LiteRT thread counts to time.
        runs: timed runs per latency figure (median kept).
        quantization_recipe: prepare `int8` with the float-equivalent rewrite
            and keep its upsampling blocks in float (see
            `export_convert.prepare_for_quantization`); False converts the
            network as it is (for comparisons). Each variant's `recipe` in the
            report says what was done.
        int8_float_blocks: conv blocks before the output head that `int8`
            keeps in float (more: closer to float32, slower).
        int8_float_head: `int8` keeps a clip output head in float too (tanh
            and residual heads always are); False quantizes it, which costs
            the bundled styles 0.1-0.6 dB and saves the largest float
            convolution.
        xnnpack_graph: convert the XNNPACK form of the network
            (`export_graph.xnnpack_copy`: one delegate partition, nothing on
            the interpreter's reference kernels; dynamic-size models then take
            sides that are multiples of 4); False converts the Keras graph as
            it is (the export before that rewrite). Each variant's `xnnpack`
            entry in the report gives its partitions and the operators outside.

    Raises:
        ValueError: on an unknown quantization or I/O type, bad sizes, threads,
            runs or photo counts.
    """

    quantizations: tuple = _option(
        QUANTIZATIONS, "Quantizations: float32, float16, dynamic_int8, int8, int16x8."
    )
    sizes: tuple = _option(DEFAULT_SIZES, "Fixed sizes (GPU models, timing).")
    calibration_dir: str | None = _option(None, "Photos for int8/int16x8 calibration.")
    num_calibration: int = _option(MIN_CALIBRATION_PHOTOS, "Calibration photos to use.")
    min_calibration: int = _option(MIN_CALIBRATION_PHOTOS, "Fewest calibration photos accepted.")
    calibration_size: int = _option(256, "Square side of the calibration photos.")
    int8_io: str = _option("float32", "int8 model I/O type.")
    test_dir: str | None = _option(None, "Test photos (default: --calibration_dir).")
    num_test_photos: int = _option(4, "Test photos per size (0: no quality check).")
    threads: tuple = _option((1, 2), "LiteRT thread counts to time.")
    runs: int = _option(5, "Timed runs per latency figure (median).")
    quantization_recipe: bool = _option(
        True, "Rewrite int8 into a float-equivalent form and keep its last blocks in float."
    )
    int8_float_blocks: int = _option(
        export_convert.INT8_FLOAT_BLOCKS,
        "Conv blocks before the output head that the int8 model keeps in float (0: none).",
    )
    int8_float_head: bool = _option(
        export_convert.INT8_FLOAT_CLIP_HEAD,
        "Keep a clip output head in float in int8 models (tanh/residual heads always are).",
    )
    xnnpack_graph: bool = _option(True, "Convert the XNNPACK form of the network.")

    def __post_init__(self):
        quantizations = export_convert.validate_quantizations(self.quantizations)
        sizes = export_convert.validate_sizes(self.sizes)
        if self.int8_io not in export_convert.INT8_IO_TYPES:
            raise ValueError(
                f"int8_io must be one of {export_convert.INT8_IO_TYPES}; got {self.int8_io!r}"
            )
        threads = self.threads
        if not threads or any(int(t) < 1 for t in threads):
            raise ValueError(f"threads must be positive integers; got {threads!r}")
        if int(self.runs) < 1 or int(self.num_test_photos) < 0:
            raise ValueError("runs must be >= 1 and num_test_photos >= 0")
        if int(self.int8_float_blocks) < 0:
            raise ValueError(f"int8_float_blocks must be >= 0; got {self.int8_float_blocks!r}")
        object.__setattr__(self, "quantizations", quantizations)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "threads", tuple(int(t) for t in threads))

    @classmethod
    def from_kwargs(cls, options=None, **kwargs):
        """`options` (default: all defaults) with the keyword arguments given replacing fields.

        Raises:
            TypeError: naming the keywords that are not fields, or if `options`
                is not a `TFLiteOptions`.
        """
        if options is None:
            options = cls()
        elif not isinstance(options, cls):
            raise TypeError(f"options must be a TFLiteOptions; got {type(options).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"export_tflite() got unexpected keyword arguments: {unknown}")
        return dataclasses.replace(options, **kwargs) if kwargs else options


def export_tflite(
    model,
    out_dir,
    options=None,
    *,
    style_name=None,
    training_config=None,
    log=None,
    **option_kwargs,
):
    """Converts, checks, verifies and describes every requested TFLite variant.

    Args:
        model: a Keras network, the path of a .keras file, or a bundled style name.
        out_dir: folder to create (or a previous TFLite export to replace).
        options: a `TFLiteOptions` (default: its defaults).
        style_name, training_config: model-card metadata (see `describe_model`).
        log: optional callable taking a progress message.
        **option_kwargs: fields of `TFLiteOptions` (`quantizations=`, `sizes=`,
            `calibration_dir=`, ...) replacing those of `options`: the
            keyword form of the earlier signature.

    Returns:
        The report dict also written to `out_dir/report.json` (and `report.md`).

    Raises:
        TypeError: on a keyword that is not a `TFLiteOptions` field.
        ValueError: on bad arguments, missing files or too few photos.
        ExportError: if a model has non-builtin operators, a fixed-size float
            model fails the GPU-delegate check, or conversion fails.
    """
    log = log or (lambda message: None)
    check_model_file(model)
    opts = TFLiteOptions.from_kwargs(options, **option_kwargs)
    check_out_dir(out_dir, _TFLITE_MARKER)
    cal_files, test_files = _photo_sets(
        opts.calibration_dir,
        opts.test_dir,
        opts.num_calibration,
        opts.min_calibration,
        opts.num_test_photos,
        any(q in export_convert.CALIBRATED for q in opts.quantizations),
    )
    model, source, bundled_config = as_model(model)
    training_config = training_config if training_config is not None else bundled_config
    metadata = describe_model(model, source, style_name, training_config)
    calibration = (
        export_convert.load_photos(cal_files, opts.calibration_size) if cal_files else None
    )
    photos, reference = _test_data(model, test_files, opts.sizes)
    report = _report_header(metadata, opts, cal_files, test_files)
    with staged_dir(out_dir, _TFLITE_MARKER) as tmp:
        for quantization, size in _variants(opts.quantizations, opts.sizes):
            entry = _export_variant(
                tmp, model, quantization, size, calibration, opts, metadata, log
            )
            if photos:
                log(f"verifying {entry['name']}")
                entry.update(_verify_variant(tmp / entry["file"], size, photos, reference, opts))
            report["variants"].append(entry)
        _add_size_ratios(report["variants"])
        log("timing the TensorFlow float32 model")
        report["tensorflow_float32_ms"] = {
            str(s): export_verify.tensorflow_latency_ms(model, s, opts.runs) for s in opts.sizes
        }
        export_verify.write_report(report, tmp)
    return report


def _export_variant(folder, model, quantization, size, calibration, opts, metadata, log):
    """Converts one variant, writes it and its card into `folder`; returns its report entry."""
    log(f"converting {variant_name(quantization, size)}")
    content, recipe = export_convert.convert_model_with_recipe(
        model,
        quantization,
        size,
        calibration,
        opts.int8_io,
        rewrite=opts.quantization_recipe,
        float_blocks=opts.int8_float_blocks,
        xnnpack=opts.xnnpack_graph,
        float_clip_head=opts.int8_float_head,
    )
    shape = export_delegate.test_shape(size, min(opts.sizes))
    entry = _write_variant(
        folder, content, quantization, size, opts.int8_io, metadata, recipe, shape
    )
    log(f"{entry['name']}: {export_delegate.summary(entry['xnnpack'])}")
    return entry


def _verify_variant(path, size, photos, reference, opts):
    """Quality and latency of one file: at every size when dynamic, else at its own."""
    chosen = opts.sizes if size is None else (size,)
    return export_verify.verify_tflite(
        path, {s: photos[s] for s in chosen}, reference, opts.threads, opts.runs
    )


def _test_data(model, files, sizes):
    if not files:
        return {}, {}
    photos = {s: export_convert.load_photos(files, s) for s in sizes}
    reference = {s: np.asarray(model.predict_on_batch(photos[s]), np.float32) for s in sizes}
    return photos, reference


def _report_header(metadata, opts, cal_files, test_files):
    return {
        **metadata,
        "quantizations": list(opts.quantizations),
        "sizes": list(opts.sizes),
        "threads": list(opts.threads),
        "int8_io": opts.int8_io,
        "num_calibration_photos": len(cal_files),
        "num_test_photos": len(test_files),
        "test_photos": [Path(f).name for f in test_files],
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "variants": [],
    }


def _write_variant(
    folder, content, quantization, size, int8_io, metadata, recipe=None, check_shape=None
):
    """Writes one .tflite file and its model card; enforces the GPU check on fixed float models.

    The card and the entry also get the file's XNNPACK partitions (`export_delegate.delegation`,
    allocated at `check_shape` when the model has a dynamic size).
    """
    name = variant_name(quantization, size)
    path = folder / f"{name}.tflite"
    gpu_issues = export_ops.gpu_delegate_issues(content)
    if size is not None and quantization in GPU_QUANTIZATIONS and gpu_issues:
        raise ExportError(f"{path.name} is not GPU-delegate compatible: " + "; ".join(gpu_issues))
    path.write_bytes(content)
    graph = (recipe or {}).get("graph", "xnnpack")
    card = _tflite_card(path, quantization, size, int8_io, gpu_issues, metadata, graph)
    card["quantization_recipe"] = recipe or {}
    card["xnnpack"] = export_delegate.delegation(content, check_shape)
    jsonio.write_json(folder / f"{name}.json", card)
    return {
        "xnnpack": card["xnnpack"],
        "recipe": recipe or {},
        "name": name,
        "file": path.name,
        "card": f"{name}.json",
        "quantization": quantization,
        "fixed_size": size,
        "bytes": len(content),
        "operators": card["operators"],
        "gpu_delegate_issues": gpu_issues,
    }


def _tensor_card(details, signature_name):
    quantized = details["dtype"] != np.float32
    scale, zero_point = details["quantization"]
    card = {
        "name": signature_name,
        "tensor": details["name"],
        "shape": [int(d) for d in details["shape_signature"]],
        "dtype": np.dtype(details["dtype"]).name,
        "layout": "NHWC, RGB",
        "range": [0, 255],
    }
    if quantized:
        card["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
        card["range_note"] = "real value = scale * (q - zero_point), in [0, 255]"
    return card


def _tflite_card(path, quantization, size, int8_io, gpu_issues, metadata, graph="xnnpack"):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    signature = interpreter.get_signature_list()[export_convert.SIGNATURE]
    return {
        "file": path.name,
        "format": "tflite",
        "quantization": quantization,
        "int8_io": int8_io if quantization == "int8" else None,
        "signature": export_convert.SIGNATURE,
        "input": _tensor_card(interpreter.get_input_details()[0], signature["inputs"][0]),
        "output": _tensor_card(interpreter.get_output_details()[0], signature["outputs"][0]),
        "dynamic_size": size is None,
        "usage": _usage(size, graph),
        "bytes": path.stat().st_size,
        "operators": export_ops.operator_names(path),
        "gpu_delegate_compatible": not gpu_issues,
        "gpu_delegate_issues": gpu_issues,
        **metadata,
    }


def _usage(size, graph):
    if size is not None:
        return f"fixed {size}x{size} input; for GPU delegates (and XNNPACK on CPU)"
    if graph == "keras":
        return "resize_tensor_input(input_index, [1, H, W, 3]) then allocate_tensors()"
    return (
        "resize_tensor_input(input_index, [1, H, W, 3]) then allocate_tensors(); H and W must "
        "be multiples of 4: reflection-pad the image at the bottom and right to the next "
        "multiple of 4 and crop the output back (what the Keras model does inside)"
    )


def _add_size_ratios(variants):
    base = {v["fixed_size"]: v["bytes"] for v in variants if v["quantization"] == "float32"}
    for v in variants:
        if v["fixed_size"] in base:
            v["size_vs_float32"] = v["bytes"] / base[v["fixed_size"]]
