"""Content photos of a stylized dataset: an image folder or a TFDS dataset, with stable ids."""

import hashlib
from pathlib import Path

from keras_style.core import images as image_lib
from keras_style.distill.recipe import check_positive_int


class FolderSource:
    """Content photos from an image folder, in sorted order; ids are relative paths.

    Args:
        directory: searched recursively for image files; unreadable files are
            left out (and counted in `skipped`).
        skip: leave out the first `skip` photos (e.g. held out for evaluation).
        max_examples: use at most this many photos after `skip` (None: all).
    """

    def __init__(self, directory, skip=0, max_examples=None):
        from keras_style.train import data

        self.directory = Path(directory)
        files, self.skipped = data.scan_image_files(image_lib.list_image_files(directory), "full")
        self.files = _select(files, skip, max_examples)
        self.skip, self.max_examples = skip, max_examples

    def __len__(self):
        return len(self.files)

    def describe(self):
        """JSON description for the card (ids hashed: enough to check equality)."""
        ids = [self.id_of(f) for f in self.files]
        return {
            "type": "image_dir",
            "image_dir": str(self.directory),
            "skip": self.skip,
            "max_examples": self.max_examples,
            "num_unreadable": len(self.skipped),
            "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        }

    def id_of(self, path):
        return Path(path).relative_to(self.directory).as_posix()

    def read(self, start, stop):
        """Yields (id, float32 (H, W, 3) image) for photos start..stop-1."""
        for path in self.files[start:stop]:
            yield self.id_of(path), image_lib.load_image(path)


class TfdsSource:
    """Content photos from a TFDS split (default `coco/2017` train), in its fixed order.

    Args:
        name: TFDS dataset name.
        split: split name (slicing such as "train[:1000]" is allowed).
        data_dir: TFDS data folder (None: TFDS's default).
        image_key: the image feature.
        skip, max_examples: as in `FolderSource`.
        download: let TFDS download and prepare the dataset if it is missing
            (coco/2017 is tens of GB).
        manual_dir: folder holding manually downloaded source archives.
    """

    def __init__(
        self,
        name="coco/2017",
        split="train",
        data_dir=None,
        image_key="image",
        skip=0,
        max_examples=None,
        download=True,
        manual_dir=None,
    ):
        self.name, self.split, self.data_dir, self.image_key = name, split, data_dir, image_key
        self.builder = _prepared_builder(name, split, data_dir, download, manual_dir)
        total = self.builder.info.splits[split].num_examples
        self.start = min(skip, total)
        self.stop = total if max_examples is None else min(total, self.start + max_examples)
        if image_key not in self.builder.info.features:
            raise ValueError(f"{name} has no feature {image_key!r}")

    def __len__(self):
        return self.stop - self.start

    def describe(self):
        return {
            "type": "tfds",
            "name": self.name,
            "version": str(self.builder.info.version),
            "split": self.split,
            "image_key": self.image_key,
            "start": self.start,
            "stop": self.stop,
        }

    def read(self, start, stop):
        import tensorflow_datasets as tfds

        begin, end = self.start + start, self.start + min(stop, len(self))
        dataset = self.builder.as_dataset(split=f"{self.split}[{begin}:{end}]", shuffle_files=False)
        for offset, example in enumerate(tfds.as_numpy(dataset)):
            yield _tfds_id(example, begin + offset), image_lib.load_image(example[self.image_key])


def _prepared_builder(name, split, data_dir, download, manual_dir):
    """A TFDS builder whose `split` is prepared (downloading it if allowed)."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # TFDS raises several types for unknown names
        raise ValueError(f"Unknown TFDS dataset {name!r}: {e}") from e
    if not builder.info.splits and download:
        config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
        builder.download_and_prepare(download_config=config)
    if split.split("[")[0] not in builder.info.splits:
        raise ValueError(
            f"{name} has no prepared split {split!r} under {builder.data_dir} "
            f"(prepared: {list(builder.info.splits)}); prepare it first or allow the download"
        )
    return builder


def _tfds_id(example, index):
    for key in ("image/filename", "image/id", "id"):
        if key in example:
            value = example[key]
            return value.decode() if isinstance(value, bytes) else str(value)
    return str(index)


def _select(items, skip, max_examples):
    check_positive_int("skip", skip, minimum=0)
    if max_examples is not None:
        check_positive_int("max_examples", max_examples)
    items = list(items)[skip:]
    items = items if max_examples is None else items[:max_examples]
    if not items:
        raise ValueError(f"No photos left after skipping {skip}")
    return items


def content_source(image_dir=None, tfds_name="coco/2017", **kwargs):
    """`FolderSource(image_dir)` if a folder is given, else `TfdsSource(tfds_name)`."""
    if image_dir:
        kwargs = {k: v for k, v in kwargs.items() if k in ("skip", "max_examples")}
        return FolderSource(image_dir, **kwargs)
    return TfdsSource(tfds_name, **kwargs)
