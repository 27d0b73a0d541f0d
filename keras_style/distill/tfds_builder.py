"""The stylized-pair dataset as a TFDS builder, so TFDS (and Apache Beam) can build it.

`StylizedPairs` runs the same `PairGenerator` as the
resumable TFRecord writer: one code path for the slow method, two ways to
drive it. Locally TFDS writes the examples from a plain generator; with
`StylizedPairsConfig(use_beam=True)` `_generate_examples` returns a Beam
`PTransform` instead, so `download_and_prepare(download_config=
tfds.download.DownloadConfig(beam_runner=...))` spreads the slow method over
Beam workers (needs the optional `apache-beam` extra). The dataset card is
stored in the TFDS metadata, so the built dataset describes itself too.

Example:

    builder = tfds_builder.make_builder(recipe, source, data_dir="~/tensorflow_datasets")
    builder.download_and_prepare()
    pairs = builder.as_dataset(split="train")
"""

import tensorflow_datasets as tfds
from etils import epath

from keras_style.distill import dataset as stylized_dataset
from keras_style.distill.generator import PairGenerator

#: Photos per unit of Beam work (one `PairGenerator` call).
BEAM_CHUNK = 16


class StylizedPairsConfig(tfds.core.BuilderConfig):
    """A recipe plus a content source: what `StylizedPairs` builds.

    Args:
        recipe: a `SlowRecipe`.
        source: a `FolderSource` or `TfdsSource`.
        use_beam: return a Beam transform from `_generate_examples`.
        **kwargs: `tfds.core.BuilderConfig` arguments (`name`, `description`).
    """

    def __init__(self, *, recipe, source, use_beam=False, **kwargs):
        kwargs.setdefault("name", "custom")
        super().__init__(**kwargs)
        self.recipe, self.source, self.use_beam = recipe, source, use_beam


class StylizedPairs(tfds.core.GeneratorBasedBuilder):
    """TFDS builder of (content, stylized, id) pairs produced by the slow method."""

    VERSION = tfds.core.Version(f"{stylized_dataset.FORMAT_VERSION}.0.0")
    RELEASE_NOTES = {str(VERSION): "Pairs from keras_style's slow method."}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        # TFDS's own lookup needs `importlib_resources` for editable installs;
        # the builder's file is all it looks for (a checksums file beside it).
        return epath.Path(__file__)

    def _info(self):
        size = self.builder_config.recipe.image_size
        image = tfds.features.Image(shape=(size, size, 3), encoding_format="png")
        card = stylized_dataset.make_card(self.builder_config.recipe, self.builder_config.source, 1)
        card.pop("shards")  # TFDS lays out its own shards
        card.pop("examples_per_shard")
        return self.dataset_info_from_configs(
            description=card["description"],
            features=tfds.features.FeaturesDict(
                {"id": tfds.features.Text(), "content": image, "stylized": image}
            ),
            supervised_keys=("content", "stylized"),
            metadata=tfds.core.MetadataDict(card=card),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the photos come from the source, nothing to download
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        config = self.builder_config
        if config.use_beam:
            return _beam_transform(config.recipe, config.source)
        return _examples(config.recipe, config.source, 0, len(config.source))


def _examples(recipe, source, start, stop):
    """Yields TFDS (key, example) pairs for photos start..stop-1 of the source."""
    generator = PairGenerator(recipe)
    for item_id, content, stylized in generator(source.read(start, stop)):
        yield item_id, {"id": item_id, "content": content, "stylized": stylized}


def _beam_transform(recipe, source):
    import apache_beam as beam

    chunks = [(s, min(s + BEAM_CHUNK, len(source))) for s in range(0, len(source), BEAM_CHUNK)]
    return beam.Create(chunks) | beam.FlatMap(lambda chunk: list(_examples(recipe, source, *chunk)))


def make_builder(recipe, source, data_dir=None, use_beam=False, name="custom"):
    """A `StylizedPairs` builder for a recipe and a source, writing under `data_dir`."""
    config = StylizedPairsConfig(recipe=recipe, source=source, use_beam=use_beam, name=name)
    return StylizedPairs(config=config, data_dir=data_dir)
