"""`export_saved_model`: a TensorFlow Serving SavedModel of a trained network.

`serving_default` takes a uint8 batch `[N, H, W, 3]` (any N, H, W) and returns
uint8 of the same shape, with casting, rounding and clipping inside the graph;
`serving_float32` takes and returns float32 in [0, 255]. It loads with
`tf.saved_model.load` in a process that never imports keras_style.
"""

from pathlib import Path

from keras_style.core import jsonio
from keras_style.export.model_source import as_model, check_model_file, describe_model
from keras_style.export.staging import check_out_dir, staged_dir

#: File written into every SavedModel export (also the overwrite marker there).
SAVED_MODEL_CARD = "model_card.json"


def _serving_functions(model):
    import tensorflow as tf

    def stylize_uint8(images):
        stylized = model(tf.cast(images, tf.float32), training=False)
        return {"stylized": tf.cast(tf.clip_by_value(tf.round(stylized), 0.0, 255.0), tf.uint8)}

    def stylize_float32(images):
        return {"stylized": model(images, training=False)}

    return stylize_uint8, stylize_float32


def export_saved_model(model, out_dir, style_name=None, training_config=None):
    """Writes a SavedModel for TensorFlow Serving with uint8 and float32 signatures.

    Args:
        model: a Keras network, the path of a .keras file, or a bundled style name.
        out_dir: the SavedModel folder to create (for TF Serving, a numbered
            version folder such as `models/starry/1`).
        style_name: style name for the model card.
        training_config: dict or JSON path for the model card.

    Returns:
        The path of the SavedModel folder, which also holds `model_card.json`.

    Raises:
        ValueError: on a missing model or an unusable output folder.
    """
    import keras
    import tensorflow as tf

    check_model_file(model)
    check_out_dir(out_dir, "saved_model.pb")
    model, source, bundled_config = as_model(model)
    training_config = training_config if training_config is not None else bundled_config
    stylize_uint8, stylize_float32 = _serving_functions(model)
    spec = [None, None, None, 3]
    with staged_dir(out_dir, "saved_model.pb") as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serving_default",
            stylize_uint8,
            [tf.TensorSpec(spec, tf.uint8, name="images")],
        )
        archive.add_endpoint(
            "serving_float32",
            stylize_float32,
            [tf.TensorSpec(spec, tf.float32, name="images")],
        )
        archive.write_out(str(tmp), verbose=False)
        card = _saved_model_card(describe_model(model, source, style_name, training_config))
        jsonio.write_json(tmp / SAVED_MODEL_CARD, card)
    return Path(out_dir)


def _saved_model_card(metadata):
    tensor = {"shape": [None, None, None, 3], "layout": "NHWC, RGB", "range": [0, 255]}
    return {
        "format": "tf_saved_model",
        "signatures": {
            "serving_default": {
                "inputs": {"images": {**tensor, "dtype": "uint8"}},
                "outputs": {"stylized": {**tensor, "dtype": "uint8"}},
            },
            "serving_float32": {
                "inputs": {"images": {**tensor, "dtype": "float32"}},
                "outputs": {"stylized": {**tensor, "dtype": "float32"}},
            },
        },
        **metadata,
    }
