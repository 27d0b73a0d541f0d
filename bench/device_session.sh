#!/usr/bin/env bash
# One-shot benchmark session on the rented nvidia-h200 machine (JAX with CUDA, NO TensorFlow).
#
#   bash bench/device_session.sh [extra bench_fast_jax.py arguments, which override the defaults]
#
# Run from the repository root. It installs the carried wheels (.whl/) into /tmp/site, sets
# PYTHONPATH=/tmp/site:$PWD, KERAS_BACKEND=jax and PYTHONUNBUFFERED=1, prints nvidia-smi and the
# versions, then runs bench/bench_fast_jax.py at full sizes; everything it writes goes to $OUT:
#   $OUT/session.log          the whole console output
#   $OUT/bench_fast_jax.json  the figures (rewritten after every measurement: kept if killed)
# Guards: pip 120 s, version check 90 s, benchmark BENCH_TIMEOUT (default 390 s, SIGKILL 15 s
# later); the benchmark stops starting new inference measurements after BUDGET_S (default 230 s)
# so its training part still runs. Whole session: about 7 minutes at most.
#
# Environment overrides: OUT (default /tmp/device_out), CARRY_DIR (default .device_carry),
# BENCH_TIMEOUT, BUDGET_S, PYTHON (default python3), SKIP_INSTALL=1 (use the current
# environment's keras: for a CPU smoke test here).
#
# ---------------------------------------------------------------------------------------------
# Preparation, here (not on the device), once, in the repository root:
#
# 1. Wheels the device lacks (its image has jax 0.11.2 + CUDA plugin, numpy, h5py, ml-dtypes,
#    absl-py, rich, packaging, typing-extensions, pillow; it has no keras, namex, optree).
#    .whl/ is already git-ignored (.gitignore: /.whl/). About 2.9 MB in all:
#      python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#        --platform manylinux1_x86_64 -d .whl keras==3.15.1 namex==0.1.0 optree==0.20.0
#    (keras 3.15.1 needs absl-py, h5py, ml-dtypes, namex, numpy, optree, packaging, rich;
#    optree needs typing-extensions: all but namex and optree are on the device already.
#    Check: unzip -p .whl/keras-*.whl '*/METADATA' | grep ^Requires-Dist.) Keep one version
#    of each wheel in .whl/: two stop the whole install.
#
# 2. Optional inputs, in the git-ignored folder .device_carry/ (each one missing falls back):
#      mkdir -p .git/info .device_carry/photos && echo /.device_carry/ >> .git/info/exclude
#      cp runs/starry_night/model_ckpt2700.keras .device_carry/model.keras          # 6.9 MB
#        (a trained TransformerNet; without it: random weights, quality figures indicative)
#      ls /work/shared/data/photos/*.jpg | head -16 | xargs cp -t .device_carry/photos  # ~0.4 MB
#        (real photos for throughput inputs and quality; without: the 5 bundled examples)
#      cp /work/shared/weights/vgg16_hed_notop_fp16.weights.h5 \
#        .device_carry/vgg16_notop.weights.h5                                       # 29.5 MB
#        (VGG16 weights for the training loss; speed does not depend on them, so skip it
#        unless the loss values matter; without: random VGG16 weights)
#    Check the total stays under the 64 MiB that may travel: du -shc .whl .device_carry plus
#    the working tree (about 7 MB).
#
# ---------------------------------------------------------------------------------------------
# Running it with the device tool (session budget: 15 minutes of device time in all, a machine
# start costs 1 to 2 of them; the machine stays warm only 30 s after a call):
#
#   run(command="bash bench/device_session.sh", carry=[".whl", ".device_carry"], timeout_s=480)
#
# The reply's files are $OUT's: session.log and bench_fast_jax.json (under files_at).
# If it fails early (say a keras/jax incompatibility) rerun AT ONCE while warm, smaller, e.g.
#   run(command="BENCH_TIMEOUT=200 BUDGET_S=120 bash bench/device_session.sh
#        --sizes 1920x1080 --batch_sizes 8,32 --train_steps 0",
#       carry=[".whl", ".device_carry"], timeout_s=260)
# then give_back. A full second run does not fit in the 15 minutes.
#
# Figures produced (see bench/bench_fast_jax.py's docstring):
# - inference images/s (median of 10 timed calls after 2 warm-up calls, block_until_ready)
#   at 1920x1080 and 512x512, batch 1, 8, 32, for fast-float32, fast-bfloat16
#   (FastStylizer's rewritten network) and plain-float32, plain-bfloat16, plain-float16
#   (TransformerNet under jax.jit); mode "device" (input and output on the GPU) for all,
#   mode "host" (FastStylizer's own numpy-in numpy-out call) for the fast ones; first-call
#   (compile) seconds;
# - quality of each variant against plain-float32 on 8 photos per size: PSNR and max |diff|;
# - training: 100 steps at 256 px, batch 16, VGG16 perceptual loss: steps/s and images/s;
# - PASS/FAIL: best device-mode images/s at 1920x1080 against --target_fps (300).
# For reference (../shared/NOTES.md): plain Keras under JAX on an H200, one 1920x1080 frame:
# 13.2 ms float32, 7.0 ms mixed_float16; one training step at 256 px batch 16: 27 ms.
# ---------------------------------------------------------------------------------------------

set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

OUT=${OUT:-/tmp/device_out}
CARRY_DIR=${CARRY_DIR:-.device_carry}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-390}
BUDGET_S=${BUDGET_S:-230}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"

session() {
    local start=$SECONDS
    if [ -z "${SKIP_INSTALL:-}" ]; then
        if ! ls .whl/*.whl >/dev/null 2>&1; then
            echo "No wheels in .whl/: download them (see the top of this file) and carry .whl"
            return 2
        fi
        timeout 120 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 3
        export PYTHONPATH=/tmp/site:$PWD
    else
        export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
    fi
    export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

    nvidia-smi || echo "(no nvidia-smi)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
        --format=csv 2>/dev/null || true
    timeout 90 "$PYTHON" -c '
import sys, jax, keras
print("python", sys.version.split()[0], "| jax", jax.__version__, jax.devices())
print("keras", keras.__version__, keras.backend.backend(), "from", keras.__file__)
print("tensorflow loaded:", "tensorflow" in sys.modules)
' || return 4

    local args=(
        --sizes 1920x1080,512x512 --batch_sizes 1,8,32 --runs 10 --warmup 2
        --budget_s "$BUDGET_S" --target_fps 300
        --train_steps 100 --train_size 256 --train_batch 16
        --json "$OUT/bench_fast_jax.json"
    )
    [ -f "$CARRY_DIR/model.keras" ] && args+=(--weights "$CARRY_DIR/model.keras")
    [ -d "$CARRY_DIR/photos" ] && args+=(--photos "$CARRY_DIR/photos")
    [ -f "$CARRY_DIR/vgg16_notop.weights.h5" ] &&
        args+=(--vgg_weights "$CARRY_DIR/vgg16_notop.weights.h5")
    echo "+ bench/bench_fast_jax.py ${args[*]} $*"
    timeout -k 15 "$BENCH_TIMEOUT" "$PYTHON" bench/bench_fast_jax.py "${args[@]}" "$@"
    local rc=$?
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "benchmark stopped at ${BENCH_TIMEOUT} s"
    echo "session done: rc $rc after $((SECONDS - start)) s"
    return $rc
}

session "$@" 2>&1 | tee "$OUT/session.log"
