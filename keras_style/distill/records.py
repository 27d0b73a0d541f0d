"""The TFRecord codec of stylized pairs: one `tf.train.Example` per (id, content, stylized)."""


def encode_example(item_id, content, stylized):
    """Serializes one pair (uint8 (S, S, 3) arrays) as a `tf.train.Example`."""
    import tensorflow as tf

    def png(image):
        return tf.io.encode_png(tf.convert_to_tensor(image, tf.uint8)).numpy()

    def feature(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "id": feature(item_id.encode()),
                "content": feature(png(content)),
                "stylized": feature(png(stylized)),
            }
        )
    )
    return example.SerializeToString()


def decode_example(record, image_size):
    """Parses a record into {"id": string, "content", "stylized": float32 (S, S, 3) [0, 255]}."""
    import tensorflow as tf

    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in ("id", "content", "stylized")}
    parsed = tf.io.parse_single_example(record, spec)

    def image(name):
        pixels = tf.io.decode_png(parsed[name], channels=3)
        return tf.cast(tf.ensure_shape(pixels, [image_size, image_size, 3]), tf.float32)

    return {"id": parsed["id"], "content": image("content"), "stylized": image("stylized")}
