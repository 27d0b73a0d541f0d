"""`export_tflite`: verified, ready-to-ship TFLite files of a trained network, with a report.

One dynamic-size model per quantization (CPU; resize the input with
`resize_tensor_input`) plus fixed-size float models for GPU delegates, each
checked for builtin-only operators (and GPU-delegate operators where it
matters), run in LiteRT, compared with the Keras output, timed, and described
by a model card; `report.json` and `report.md` sum up what each file costs in
size, quality and speed. The output folder is replaced atomically
(`staging`); `saved_model` is the TensorFlow Serving export.
"""

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


def _validate(quantizations, sizes, int8_io, threads, runs, num_test_photos):
    quantizations = export_convert.validate_quantizations(quantizations)
    sizes = export_convert.validate_sizes(sizes)
    if int8_io not in export_convert.INT8_IO_TYPES:
        raise ValueError(f"int8_io must be one of {export_convert.INT8_IO_TYPES}; got {int8_io!r}")
    if not threads or any(int(t) < 1 for t in threads):
        raise ValueError(f"threads must be positive integers; got {threads!r}")
    if int(runs) < 1 or int(num_test_photos) < 0:
        raise ValueError("runs must be >= 1 and num_test_photos >= 0")
    return quantizations, sizes, tuple(int(t) for t in threads)


def export_tflite(
    model,
    out_dir,
    quantizations=QUANTIZATIONS,
    sizes=DEFAULT_SIZES,
    calibration_dir=None,
    num_calibration=MIN_CALIBRATION_PHOTOS,
    min_calibration=MIN_CALIBRATION_PHOTOS,
    calibration_size=256,
    int8_io="float32",
    test_dir=None,
    num_test_photos=4,
    threads=(1, 2),
    runs=5,
    style_name=None,
    training_config=None,
    log=None,
    quantization_recipe=True,
    int8_float_blocks=export_convert.INT8_FLOAT_BLOCKS,
    xnnpack_graph=True,
):
    """Converts, checks, verifies and describes every requested TFLite variant.

    Args:
        model: a Keras network, the path of a .keras file, or a bundled style name.
        out_dir: folder to create (or a previous TFLite export to replace).
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
        style_name, training_config: model-card metadata (see `describe_model`).
        log: optional callable taking a progress message.
        quantization_recipe: prepare `int8` with the float-equivalent rewrite
            and keep its output head in float (see
            `export_convert.prepare_for_quantization`); False converts the
            network as it is (for comparisons). Each variant's `recipe` in the
            report says what was done.
        int8_float_blocks: conv blocks before the output head that `int8`
            keeps in float besides the head (more: closer to float32, slower).
        xnnpack_graph: convert the XNNPACK form of the network
            (`export_graph.xnnpack_copy`: one delegate partition, nothing on
            the interpreter's reference kernels; dynamic-size models then take
            sides that are multiples of 4); False converts the Keras graph as
            it is (the export before that rewrite). Each variant's `xnnpack`
            entry in the report gives its partitions and the operators outside.

    Returns:
        The report dict also written to `out_dir/report.json` (and `report.md`).

    Raises:
        ValueError: on bad arguments, missing files or too few photos.
        ExportError: if a model has non-builtin operators, a fixed-size float
            model fails the GPU-delegate check, or conversion fails.
    """
    log = log or (lambda message: None)
    check_model_file(model)
    quantizations, sizes, threads = _validate(
        quantizations, sizes, int8_io, threads, runs, num_test_photos
    )
    check_out_dir(out_dir, _TFLITE_MARKER)
    needs_cal = any(q in export_convert.CALIBRATED for q in quantizations)
    cal_files, test_files = _photo_sets(
        calibration_dir,
        test_dir,
        num_calibration,
        min_calibration,
        num_test_photos,
        needs_cal,
    )
    model, source, bundled_config = as_model(model)
    training_config = training_config if training_config is not None else bundled_config
    metadata = describe_model(model, source, style_name, training_config)
    calibration = export_convert.load_photos(cal_files, calibration_size) if cal_files else None
    photos, reference = _test_data(model, test_files, sizes)
    report = _report_header(metadata, quantizations, sizes, threads, cal_files, test_files, int8_io)
    with staged_dir(out_dir, _TFLITE_MARKER) as tmp:
        for quantization, size in _variants(quantizations, sizes):
            log(f"converting {variant_name(quantization, size)}")
            content, recipe = export_convert.convert_model_with_recipe(
                model,
                quantization,
                size,
                calibration,
                int8_io,
                rewrite=quantization_recipe,
                float_blocks=int8_float_blocks,
                xnnpack=xnnpack_graph,
            )
            shape = export_delegate.test_shape(size, min(sizes))
            entry = _write_variant(
                tmp, content, quantization, size, int8_io, metadata, recipe, shape
            )
            log(f"{entry['name']}: {export_delegate.summary(entry['xnnpack'])}")
            if photos:
                log(f"verifying {entry['name']}")
                chosen = sizes if size is None else (size,)
                entry.update(
                    export_verify.verify_tflite(
                        tmp / entry["file"],
                        {s: photos[s] for s in chosen},
                        reference,
                        threads,
                        runs,
                    )
                )
            report["variants"].append(entry)
        _add_size_ratios(report["variants"])
        log("timing the TensorFlow float32 model")
        report["tensorflow_float32_ms"] = {
            str(s): export_verify.tensorflow_latency_ms(model, s, runs) for s in sizes
        }
        export_verify.write_report(report, tmp)
    return report


def _test_data(model, files, sizes):
    if not files:
        return {}, {}
    photos = {s: export_convert.load_photos(files, s) for s in sizes}
    reference = {s: np.asarray(model.predict_on_batch(photos[s]), np.float32) for s in sizes}
    return photos, reference


def _report_header(metadata, quantizations, sizes, threads, cal_files, test_files, int8_io):
    return {
        **metadata,
        "quantizations": list(quantizations),
        "sizes": list(sizes),
        "threads": list(threads),
        "int8_io": int8_io,
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
