"""`PairGenerator`: photos -> (id, content crop, slow-method stylization), batched.

The per-example work shared by the resumable writer (`distill.dataset`) and
the TFDS builder (`distill.tfds_builder`).
"""

import numpy as np

from keras_style.core import images as image_lib


class PairGenerator:
    """Runs a recipe's slow method on photos, `batch_size` at a time.

    Shared by the TFRecord writer and the TFDS builder, so both produce the
    same pairs. The VGG network and the compiled step are built on first use
    (and cached per process by `keras_style.slow.cache`).
    """

    def __init__(self, recipe):
        self.recipe = recipe
        self._stylizer = None
        self._styles = None

    def _setup(self):
        from keras_style.slow import cache

        if self._stylizer is None:
            r = self.recipe
            self._stylizer = cache.get_gatys_stylizer(
                r.loss_config(), r.backbone, r.vgg_weights, r.precision
            )
            self._styles = [image_lib.load_image(f) for f in r.style_files]

    def stylize(self, contents):
        """(N, S, S, 3) float32 crops -> (N, S, S, 3) float32 stylized images."""
        self._setup()
        out, _ = self._stylizer.stylize_batch(
            contents,
            self._styles,
            self.recipe.style_weights,
            self.recipe.optimize_config(),
            verbose=0,
        )
        return out

    def __call__(self, items, on_example=None):
        """Yields (id, uint8 content crop, uint8 stylized) for (id, photo) items, in order."""
        size, batch = self.recipe.image_size, []
        for item_id, photo in items:
            batch.append((item_id, image_lib.center_square(photo, size)))
            if len(batch) == self.recipe.batch_size:
                yield from self._flush(batch, on_example)
                batch = []
        if batch:
            yield from self._flush(batch, on_example)

    def _flush(self, batch, on_example):
        crops = np.stack([crop for _, crop in batch])
        stylized = self.stylize(crops)
        for (item_id, crop), out in zip(batch, stylized, strict=True):
            if on_example:
                on_example()
            yield item_id, image_lib.to_uint8(crop), image_lib.to_uint8(out)
