"""Times the fast-path training step of two versions of the package in one run.

    python bench/bench_train_step.py --baseline ccdeb81 --widths 1.0,0.5 \
        --out docs/training_speed/train_step.json

Each measurement is a fresh process running `keras_style.train.trainer.train`
(`keras_style.trainer.train` in revisions before the subpackages; the library
call behind `python -m training.train`) on real photos for a few
steps: 256 px crops, batch 4, VGG16 perceptual loss, the bundled styles'
clip head. The baseline is a git revision checked out into a temporary
folder; rounds alternate baseline and current code, so load from other
processes hits both alike. Per-step wall times and process CPU times come
from a Keras callback; the first steps (tracing, warm-up) are dropped and
the median of the rest is reported. CPU seconds per step (all threads) are
the steadier figure on a shared machine, where other processes stretch the
wall time. Both are reported with the machine's CPU model and flags, since the figures
depend on them (bfloat16 only pays on CPUs with AMX/AVX512-BF16 units).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

_DRIVER = r"""
import json, sys, time
import keras
try:
    from keras_style.train import trainer
    from keras_style.train.config import TrainConfig
except ImportError:  # revisions from before the subpackages
    from keras_style import trainer
    TrainConfig = trainer.TrainConfig
args = json.loads(sys.argv[1])
times, cpu = [], []
class Timer(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter(), time.process_time()
    def on_train_batch_end(self, batch, logs=None):
        times.append(time.perf_counter() - self.start[0])
        cpu.append(time.process_time() - self.start[1])
fields = {f for f in TrainConfig.__dataclass_fields__}
config = TrainConfig(**{k: v for k, v in args["config"].items() if k in fields})
result = trainer.train(config, callbacks=[Timer()], verbose=0)
print("RESULT " + json.dumps({"step_s": times, "cpu_s": cpu}))
"""


def _cpu():
    info = {"machine": platform.machine(), "cores": os.cpu_count(), "model": "", "flags": []}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return info
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not info["model"]:
            info["model"] = value.strip()
        if key.strip() == "flags" and not info["flags"]:
            wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")
            info["flags"] = [f for f in value.split() if f in wanted]
    return info


def _checkout(revision, folder):
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), revision],
        check=True,
        capture_output=True,
    )


def _run(tree, config, timeout):
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps({"config": config})],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if out.returncode or line is None:
        raise RuntimeError(f"training run failed in {tree}:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="ccdeb81", help="git revision to compare with")
    parser.add_argument("--widths", default="1.0,0.5")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=7, help="steps per run (2 are warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--photos", default=str(SHARED / "data" / "photos"))
    parser.add_argument("--style", default=str(SHARED / "data" / "styles" / "great_wave.jpg"))
    parser.add_argument(
        "--vgg_weights", default=str(SHARED / "weights" / "vgg16_hed_notop_fp16.weights.h5")
    )
    parser.add_argument("--net_precision", default="float32")
    parser.add_argument(
        "--baseline_net_precision",
        default="float32",
        help="the baseline's network precision (revisions before net_precision: float32 only)",
    )
    parser.add_argument("--out", help="write the figures here as JSON")
    args = parser.parse_args()
    results = {"command": " ".join(["python", *sys.argv]), "cpu": _cpu(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        _checkout(args.baseline, baseline)
        try:
            for width in [float(w) for w in args.widths.split(",")]:
                for round_index in range(args.rounds):
                    for name, tree in (("baseline", baseline), ("current", REPO)):
                        config = {
                            "workdir": str(Path(tmp) / f"w{width}-{name}-{round_index}"),
                            "style_image": args.style,
                            "image_dir": args.photos,
                            "backbone": "vgg16",
                            "vgg_weights": args.vgg_weights,
                            "image_size": args.size,
                            "batch_size": args.batch_size,
                            "steps": args.steps,
                            "width": width,
                            "head": "clip",
                            "style_size": 256,
                            "validate": "header",
                            "seed": 0,
                            "checkpoint_every": 1000,
                            "sample_every": 0,
                            "summary_every": 0,
                            "loss_precision": "auto",
                        }
                        if name == "current":
                            config["net_precision"] = args.net_precision
                        elif args.baseline_net_precision != "float32":
                            config["net_precision"] = args.baseline_net_precision
                        run = _run(tree, config, timeout=3600)
                        record = {
                            "width": width,
                            "version": name,
                            "round": round_index,
                            "median_step_s": statistics.median(run["step_s"][2:]),
                            "median_cpu_s": statistics.median(run["cpu_s"][2:]),
                            "step_s": run["step_s"],
                            "cpu_s": run["cpu_s"],
                        }
                        results["runs"].append(record)
                        print(
                            f"width {width} {name:8s} round {round_index}: median "
                            f"{record['median_step_s']:.2f} s/step, {record['median_cpu_s']:.2f} "
                            "CPU s/step",
                            flush=True,
                        )
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)],
                capture_output=True,
            )
    summary = {}
    for width in sorted({r["width"] for r in results["runs"]}):
        entry = {}
        for key in ("median_step_s", "median_cpu_s"):
            med = {
                v: statistics.median(
                    r[key] for r in results["runs"] if r["width"] == width and r["version"] == v
                )
                for v in ("baseline", "current")
            }
            entry[key] = {**med, "speedup": med["baseline"] / med["current"]}
            print(
                f"width {width} {key}: baseline {med['baseline']:.2f}, current "
                f"{med['current']:.2f}, {entry[key]['speedup']:.2f}x"
            )
        summary[str(width)] = entry
    results["summary"] = summary
    try:
        results["load_average"] = os.getloadavg()
    except OSError:
        pass
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
