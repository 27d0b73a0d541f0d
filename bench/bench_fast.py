"""Benchmarks the feed-forward stylizer on this machine (TensorFlow backend, CPU).

Prints, for the full-width network: inference time per image at 256x256,
512x512 and 1920x1080 through `FastStylizer`'s compiled call (median, minimum
and process CPU time of several runs), and training steps per second at
256 px, batch 4, random-weights VGG19 (the time is independent of weights).

The issue's target: the same architecture in PyTorch eager took 497 ms at
512x512 on this CPU; ours must take at most half (248 ms).

    python bench/bench_fast.py [--runs 5] [--width 1.0] [--train_steps 3]

Other jobs on the machine inflate wall times; the load average is printed
with the figures, and CPU time / cores is a rough contention-free estimate.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SIZES = {"256x256": (256, 256), "512x512": (512, 512), "1920x1080": (1080, 1920)}


def _time(fn, runs):
    fn()  # warm-up: tracing and first allocation
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), min(walls), statistics.median(cpus)


def bench_inference(width, runs):
    from keras_style.fast import FastStylizer
    from keras_style.transformer_net import build_transformer_net

    stylizer = FastStylizer(build_transformer_net(width))
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        x = rng.uniform(0, 255, (1, h, w, 3)).astype(np.float32)
        median, best, cpu = _time(lambda x=x: stylizer._run(x), runs)
        print(
            f"inference {name:>9}: median {median * 1e3:7.1f} ms  min {best * 1e3:7.1f} ms  "
            f"cpu {cpu * 1e3:7.1f} ms",
            flush=True,
        )


def bench_training(width, steps):
    import keras
    import tensorflow as tf

    from keras_style import trainer

    config = trainer.TrainConfig(
        style_image="unused", vgg_weights=None, width=width, image_size=256, batch_size=4
    )
    style = np.random.default_rng(1).uniform(0, 255, (256, 256, 3)).astype(np.float32)
    model = trainer.build_trainer(config, style_image=style)
    batch = np.random.default_rng(2).uniform(0, 255, (4, 256, 256, 3)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)  # compile
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    per_step = (time.perf_counter() - start) / steps
    print(
        f"training 256 px batch 4 ({keras.backend.backend()}): {per_step:.2f} s/step "
        f"= {1 / per_step:.2f} steps/s",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per size")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier")
    parser.add_argument("--train_steps", type=int, default=3, help="timed training steps (0: skip)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; width {args.width}")
    bench_inference(args.width, args.runs)
    if args.train_steps:
        bench_training(args.width, args.train_steps)


if __name__ == "__main__":
    main()
