"""Runs exported models and measures what each one costs: size, quality, speed.

Every .tflite file is loaded in the LiteRT interpreter (`ai_edge_litert`, the
runtime apps ship), fed photos, and compared with the float32 Keras network's
output (PSNR and SSIM from `keras_style.core.metrics`). Latency is the median
`invoke()` time per image on this CPU with 1 and 2 threads at each size. The
results go into a JSON report and a Markdown table (`write_report`).
"""

import statistics
import time
from pathlib import Path

import numpy as np

from keras_style.core import images, jsonio, metrics

#: Sides of dynamic-size models are padded to multiples of this (`export_graph.SIZE_MULTIPLE`).
SIZE_MULTIPLE = 4


def _read(tflite_model):
    if isinstance(tflite_model, (bytes, bytearray)):
        return bytes(tflite_model)
    return Path(tflite_model).read_bytes()


class TFLiteRunner:
    """One LiteRT interpreter that stylizes [0, 255] float images of any allowed size.

    Hides the two things callers would otherwise repeat: resizing the input of
    a dynamic-size model (`resize_tensor_input` + `allocate_tensors`, only when
    the shape changes) and (de)quantizing int8/uint8 inputs and outputs with the
    tensors' scale and zero point.
    """

    def __init__(self, tflite_model, num_threads=2):
        from ai_edge_litert.interpreter import Interpreter

        self._content = _read(tflite_model)
        self.interpreter = Interpreter(model_content=self._content, num_threads=num_threads)
        self._shape = None  # allocated on first use: a dynamic model's default shape is 1x1

    @property
    def input_details(self):
        return self.interpreter.get_input_details()[0]

    @property
    def output_details(self):
        return self.interpreter.get_output_details()[0]

    def prepare(self, shape):
        """Sets the input shape `[1, H, W, 3]`; a no-op when it is unchanged."""
        shape = tuple(int(d) for d in shape)
        if shape == self._shape:
            return
        if shape != tuple(self.input_details["shape"]):
            self.interpreter.resize_tensor_input(self.input_details["index"], shape, strict=True)
        self.interpreter.allocate_tensors()
        self._shape = shape

    @property
    def dynamic(self):
        """Whether the model takes any height and width (`resize_tensor_input`)."""
        return bool(np.any(np.asarray(self.input_details["shape_signature"])[1:3] < 0))

    def __call__(self, batch):
        """Stylizes one `[1, H, W, 3]` float batch in [0, 255]; returns float32 [0, 255].

        A dynamic-size model gets the image reflection-padded at the bottom and
        right to sides that are multiples of 4 (what the Keras network does
        inside; the exported graph leaves it to the caller), and its output
        cropped back.
        """
        batch = np.asarray(batch, dtype=np.float32)
        height, width = batch.shape[1:3]
        if self.dynamic:
            pad_h, pad_w = -height % SIZE_MULTIPLE, -width % SIZE_MULTIPLE
            batch = np.pad(batch, [(0, 0), (0, pad_h), (0, pad_w), (0, 0)], mode="reflect")
        self.prepare(batch.shape)
        self.interpreter.set_tensor(
            self.input_details["index"], _quantize(batch, self.input_details)
        )
        self.interpreter.invoke()
        output = self.interpreter.get_tensor(self.output_details["index"])
        return _dequantize(output, self.output_details)[:, :height, :width]


def _quantize(x, details):
    dtype = np.dtype(details["dtype"])
    if dtype == np.float32:
        return x
    scale, zero_point = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.rint(x / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(y, details):
    if np.dtype(details["dtype"]) == np.float32:
        return y.astype(np.float32)
    scale, zero_point = details["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def stylize_each(runner, photos):
    """Runs `runner` on each photo of a `[N, H, W, 3]` batch; returns the stacked outputs."""
    return np.concatenate([runner(photo[None]) for photo in photos])


def quality(tflite_model, photos, reference, num_threads=2):
    """PSNR (dB) and SSIM of a .tflite model's output against reference outputs.

    Args:
        tflite_model: .tflite bytes or path.
        photos: float32 `[N, H, W, 3]` inputs in [0, 255].
        reference: the float32 Keras outputs for `photos`.
        num_threads: interpreter threads (does not change the result).

    Returns:
        `{"psnr": float, "ssim": float}`, means over the photos.
    """
    output = stylize_each(TFLiteRunner(tflite_model, num_threads), photos)
    return {
        "psnr": metrics.psnr(output, reference),
        "ssim": metrics.ssim(output, reference),
    }


def _median_ms(step, runs, warmup):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _test_image(size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32)


def tflite_latency_ms(tflite_model, size, num_threads, runs=5, warmup=1):
    """Median `invoke()` time in ms of one `size` x `size` image with `num_threads` threads."""
    runner = TFLiteRunner(tflite_model, num_threads)
    runner(_test_image(size))
    return _median_ms(runner.interpreter.invoke, runs, warmup)


def tensorflow_latency_ms(model, size, runs=5, warmup=1):
    """Median time in ms of the float32 Keras network as a TensorFlow graph (all CPU cores)."""
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False))
    image = tf.constant(_test_image(size))
    return _median_ms(lambda: call(image).numpy(), runs, warmup + 1)


def verify_tflite(tflite_model, photos_by_size, reference_by_size, threads=(1, 2), runs=5):
    """Quality at every given size and latency per thread count and size.

    Args:
        tflite_model: .tflite bytes or path.
        photos_by_size: `{size: [N, size, size, 3] float32}` test photos.
        reference_by_size: `{size: Keras float32 outputs}` for those photos.
        threads: interpreter thread counts to time.
        runs: timed invocations per measurement (the median is kept).

    Returns:
        A JSON-ready dict: `quality` per size, worst-case `psnr` and `ssim`
        over sizes, and `latency_ms[threads][size]`.
    """
    per_size = {
        str(size): quality(tflite_model, photos, reference_by_size[size])
        for size, photos in photos_by_size.items()
    }
    latency = {
        str(t): {
            str(size): tflite_latency_ms(tflite_model, size, t, runs) for size in photos_by_size
        }
        for t in threads
    }
    return {
        "quality": per_size,
        "psnr": min(q["psnr"] for q in per_size.values()),
        "ssim": min(q["ssim"] for q in per_size.values()),
        "latency_ms": latency,
    }


def markdown_table(report):
    """Formats a report from `keras_style.export.tflite.export_tflite` as a Markdown table."""
    sizes = [str(s) for s in report["sizes"]]
    threads = [str(t) for t in report["threads"]]
    timing = [f"{s} px {t}T ms" for s in sizes for t in threads]
    header = [
        "variant",
        "file",
        "MB",
        "% of float32",
        "PSNR dB",
        "SSIM",
        *timing,
        "XNNPACK partitions",
        "GPU delegate",
    ]
    rows = [_row(v, sizes, threads) for v in report["variants"]]
    tf_ms = report.get("tensorflow_float32_ms", {})
    if tf_ms:
        tf_cells = [_ms(tf_ms.get(s)) if t == threads[-1] else "" for s in sizes for t in threads]
        rows.append(
            ["TensorFlow float32 (Keras)", "model.keras", "", "", "", "", *tf_cells, "", ""]
        )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _ms(value):
    return "" if value is None else f"{value:.1f}"


def _row(variant, sizes, threads):
    latency = variant.get("latency_ms", {})
    cells = [_ms(latency.get(t, {}).get(s)) for s in sizes for t in threads]
    ratio = variant.get("size_vs_float32")
    gpu = "yes" if not variant["gpu_delegate_issues"] else "no"
    return [
        variant["name"],
        variant["file"],
        f"{variant['bytes'] / 1e6:.2f}",
        "" if ratio is None else f"{100 * ratio:.0f}%",
        "" if "psnr" not in variant else f"{variant['psnr']:.2f}",
        "" if "ssim" not in variant else f"{variant['ssim']:.4f}",
        *cells,
        _xnnpack_cell(variant.get("xnnpack")),
        gpu,
    ]


def _xnnpack_cell(info):
    """`1` when XNNPACK runs everything, else the count and the operators left outside."""
    if not info:
        return ""
    outside = ", ".join(f"{name} x{n}" for name, n in info["outside"].items())
    return f"{info['partitions']}" + (f" (outside: {outside})" if outside else "")


def write_report(report, out_dir):
    """Writes `report.json` and `report.md` into `out_dir`; returns both paths."""
    out_dir = Path(out_dir)
    json_path = jsonio.write_json(out_dir / "report.json", report)
    md_path = out_dir / "report.md"
    with images.atomic_write(md_path) as tmp:
        Path(tmp).write_text(_markdown_document(report))
    return json_path, md_path


def _markdown_document(report):
    lines = [
        f"# TFLite export report: {report.get('style_name') or report.get('source_model', '')}",
        "",
        (
            f"Quality: PSNR/SSIM against the float32 Keras output on {report['num_test_photos']} "
            "test photos (worst size). Latency: median LiteRT `invoke()` per image on this CPU "
            f"({report.get('cpu', 'unknown CPU')}), T = interpreter threads; the TensorFlow row "
            "uses all cores. Dynamic models are timed at every size via `resize_tensor_input`. "
            "XNNPACK partitions: delegate partitions in the LiteRT interpreter (1 = the "
            "whole model runs in XNNPACK) and the operators left to the interpreter."
        ),
        "",
        markdown_table(report),
        *_recipe_lines(report),
    ]
    return "\n".join(lines)


def _recipe_lines(report):
    """Markdown lines saying how each quantized variant was prepared and what stayed float."""
    lines = []
    for variant in report["variants"]:
        recipe = variant.get("recipe") or {}
        rewrite = recipe.get("rewrite")
        if not rewrite:
            continue
        heads = ", ".join(
            f"{name} clipped at +-{h['limit']:g}" for name, h in rewrite["clipped_tanh"].items()
        )
        text = (
            f"- **{variant['name']}**: float-equivalent rewrite (float32 agreement "
            f"{rewrite['float_psnr']:.1f} dB PSNR): "
            f"{len(rewrite['equalized_convolutions'])} convolutions equalized per channel "
            f"before instance norm; {heads or 'no tanh head'}."
        )
        if recipe.get("float_layers"):
            text += (
                f" Kept in float: {', '.join(recipe['float_layers'])} "
                f"({recipe.get('float_tensors', 0)} tensors) - {recipe['float_layers_why']}."
            )
        lines.append(text)
    if lines:
        lines = ["", "## Quantization recipe", "", *lines, ""]
    return lines


#: Issue targets for a trained network: (variant, metric, comparison, bound).
TARGETS = (
    ("float16", "psnr", ">=", 45.0),
    ("dynamic_int8", "psnr", ">=", 35.0),
    ("int8", "psnr", ">=", 28.0),
    ("int8", "ssim", ">=", 0.90),
    ("int8", "size_vs_float32", "<=", 0.30),
)


def check_targets(report, latency_size=384, latency_threads=2):
    """Compares a report with the export targets.

    Besides `TARGETS`, the int8 model must take at most half the float32
    model's latency at `latency_size` with `latency_threads` threads.

    Returns:
        A list of `(description, value, passed)`; targets whose variant or size
        is missing from the report are left out.
    """
    variants = {v["name"]: v for v in report["variants"]}
    results = []
    for name, key, op, bound in TARGETS:
        value = variants.get(name, {}).get(key)
        if value is not None:
            passed = value >= bound if op == ">=" else value <= bound
            results.append((f"{name} {key} {op} {bound:g}", value, passed))
    size, threads = str(latency_size), str(latency_threads)
    try:
        int8 = variants["int8"]["latency_ms"][threads][size]
        float32 = variants["float32"]["latency_ms"][threads][size]
    except KeyError:
        return results
    ratio = int8 / float32
    results.append(
        (f"int8 latency <= 0.5 x float32 at {size} px, {threads} threads", ratio, ratio <= 0.5)
    )
    return results
