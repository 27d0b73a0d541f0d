"""Generates a stylized-pair dataset with the slow method, for distillation.

Sharded TFRecords plus a dataset card (see `keras_style.distill.dataset`).
Resumable: rerun the same command after an interruption and it skips the
finished shards. Split the work over processes or machines with
--num_shards N --shard_index i (same --output_dir, e.g. a shared disk).

    python -m training.make_stylized_dataset \\
        --config configs/distill_starry_night_128.json \\
        --style ../shared/data/styles/starry_night.jpg \\
        --vgg_weights ../shared/weights/vgg16_hed_notop_fp16.weights.h5 \\
        --image_dir ../shared/data/photos --max_examples 40 \\
        --output_dir datasets/starry_night_128

With --tfds the same pairs are built through the TFDS builder into
--output_dir as a TFDS data dir (add --beam_runner DirectRunner for Beam).
"""

from absl import app, flags

from training import binary

FLAGS = flags.FLAGS

flags.DEFINE_string("config", None, "JSON file of slow-method options (see configs/distill_*).")
flags.DEFINE_multi_string("style", None, "Style image(s); several are blended.")
flags.DEFINE_list("style_weights", None, "Blend weights, one per --style.")
flags.DEFINE_string("output_dir", None, "Dataset folder (created; reruns continue it).")
flags.DEFINE_string("image_dir", None, "Folder of content photos (instead of TFDS).")
flags.DEFINE_string("tfds_name", "coco/2017", "TFDS dataset of content photos.")
flags.DEFINE_string("split", "train", "TFDS split.")
flags.DEFINE_string("data_dir", None, "TFDS data dir of the content dataset.")
flags.DEFINE_string("image_key", "image", "Image feature of the TFDS dataset.")
flags.DEFINE_string("manual_dir", None, "TFDS manual_dir holding downloaded source archives.")
flags.DEFINE_bool("download", True, "Let TFDS download and prepare a missing dataset.")
flags.DEFINE_integer("skip_examples", 0, "Leave out the first N photos (held out elsewhere).")
flags.DEFINE_integer("max_examples", None, "Use at most N photos after the skipped ones.")
flags.DEFINE_integer("image_size", None, "Override the config's image_size.")
flags.DEFINE_integer("batch_size", None, "Override the config's batch_size.")
flags.DEFINE_integer("iterations", None, "Override the config's optimize.iterations.")
flags.DEFINE_string("backbone", None, "Override the config's backbone (vgg19 or vgg16).")
flags.DEFINE_string("vgg_weights", None, "Override the config's vgg_weights (a local file).")
flags.DEFINE_enum(
    "precision",
    None,
    ["auto", "float32", "bfloat16"],
    "Override the config's loss-network precision (default auto: bfloat16 where native).",
)
flags.DEFINE_integer("examples_per_shard", 32, "Photos per TFRecord file.")
flags.DEFINE_integer("num_shards", 1, "Split the work over this many processes.")
flags.DEFINE_integer("shard_index", 0, "This process's part of the work, in [0, num_shards).")
flags.DEFINE_bool("tfds", False, "Build through the TFDS builder instead of resumable shards.")
flags.DEFINE_string("beam_runner", None, "With --tfds: a Beam runner name, e.g. DirectRunner.")
flags.DEFINE_integer("verbose", 1, "1: progress bar with ETA; 0: silent.")


def load_config(path):
    """The JSON config as a dict ({} without a path)."""
    from keras_style.core import jsonio

    return jsonio.read_preset(path) if path else {}


def build_recipe(config):
    """A `SlowRecipe` from the config, with the command-line overrides applied."""
    from keras_style.distill.recipe import SlowRecipe

    fields = {k: v for k, v in config.items() if not k.startswith("_")}
    overrides = {
        "image_size": FLAGS.image_size,
        "batch_size": FLAGS.batch_size,
        "backbone": FLAGS.backbone,
        "vgg_weights": FLAGS.vgg_weights,
        "precision": FLAGS.precision,
    }
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if FLAGS.iterations is not None:
        fields["optimize"] = {**fields.get("optimize", {}), "iterations": FLAGS.iterations}
    if not FLAGS.style:
        raise ValueError("--style is required")
    weights = [float(w) for w in FLAGS.style_weights] if FLAGS.style_weights else None
    try:
        return SlowRecipe(style_files=FLAGS.style, style_weights=weights, **fields)
    except TypeError as e:
        raise ValueError(f"Unknown option in the config: {e}") from e


def build_source():
    from keras_style.distill.sources import content_source

    return content_source(
        image_dir=FLAGS.image_dir,
        tfds_name=FLAGS.tfds_name,
        split=FLAGS.split,
        data_dir=FLAGS.data_dir,
        image_key=FLAGS.image_key,
        download=FLAGS.download,
        manual_dir=FLAGS.manual_dir,
        skip=FLAGS.skip_examples,
        max_examples=FLAGS.max_examples,
    )


def build_with_tfds(recipe, source):
    import tensorflow_datasets as tfds

    from keras_style.distill import tfds_builder

    runner = FLAGS.beam_runner
    builder = tfds_builder.make_builder(recipe, source, FLAGS.output_dir, use_beam=bool(runner))
    config = tfds.download.DownloadConfig(beam_runner=runner) if runner else None
    builder.download_and_prepare(download_config=config)
    print(f"Built {builder.info.splits['train'].num_examples} pairs in {builder.data_dir}")


def run():
    from keras_style.distill import dataset as stylized_dataset

    if not FLAGS.output_dir:
        raise ValueError("--output_dir is required")
    recipe = build_recipe(load_config(FLAGS.config))
    source = build_source()
    if FLAGS.tfds:
        return build_with_tfds(recipe, source)
    card = stylized_dataset.write_stylized_dataset(
        FLAGS.output_dir,
        source,
        recipe,
        examples_per_shard=FLAGS.examples_per_shard,
        num_workers=FLAGS.num_shards,
        worker_index=FLAGS.shard_index,
        verbose=FLAGS.verbose,
    )
    missing = stylized_dataset.missing_shards(FLAGS.output_dir, card)
    state = f"{len(missing)} shard(s) left to other workers" if missing else "complete"
    print(f"{FLAGS.output_dir}: {stylized_dataset.card_summary(card)}; {state}")


def main(argv):
    binary.run_cleanly(argv, run, interrupted=binary.RESUMABLE_INTERRUPTED)


if __name__ == "__main__":
    app.run(main)
