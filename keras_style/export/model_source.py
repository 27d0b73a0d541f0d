"""What an export starts from: a network, a .keras file or a bundled style name, and its card.

`as_model` turns any of the three into the network plus where it came from and
the training config that made it; `describe_model` is the metadata every model
card carries (style, training config, versions).
"""

import os
from pathlib import Path

from keras_style.core import jsonio

#: Files looked for beside model.keras for the training configuration.
TRAINING_CONFIG_NAMES = ("config.json", "train_config.json", "training_config.json")


def find_training_config(model_path):
    """Returns the training configuration saved beside a model file, or None.

    Looks for `TRAINING_CONFIG_NAMES` in the model's folder.
    """
    folder = Path(model_path).parent
    for name in TRAINING_CONFIG_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return jsonio.read_preset(candidate)
    return None


def bundled_name(model):
    """The bundled style `model` names, or None (an existing file wins over a style name)."""
    from keras_style.fast import styles

    if styles.is_style_name(model) and model in styles.list_styles():
        return model
    return None


def check_model_file(model):
    """Raises ValueError when `model` is a path (not a style name) to no file."""
    if bundled_name(model):
        return
    if isinstance(model, (str, os.PathLike)) and not Path(model).is_file():
        raise ValueError(f"Model file not found: {model}")


def as_model(model):
    """(model, source path or None, training config or None) for a model, path or style name."""
    from keras_style.fast import styles

    name = bundled_name(model)
    if name:
        return (
            styles.load_style(name),
            None,
            styles.style_card(name).get("training", {}).get("config"),
        )
    if isinstance(model, (str, os.PathLike)):
        return styles.load_model_file(model), str(model), None
    return model, None, None


def describe_model(model, source=None, style_name=None, training_config=None):
    """Metadata shared by every model card: style, training config, provenance.

    Args:
        model: the Keras network.
        source: path of the model.keras it came from, if any.
        style_name: overrides the style name (else the config's, else the model's name).
        training_config: dict or JSON path; else the config found beside `source`.
    """
    import keras
    import tensorflow as tf

    from keras_style import __version__

    if isinstance(training_config, (str, os.PathLike)):
        training_config = jsonio.read_preset(training_config)
    if training_config is None and source:
        training_config = find_training_config(source)
    config = training_config or {}
    style = style_name or config.get("style_name") or config.get("style") or model.name
    return {
        "style_name": str(style),
        "training_config": training_config,
        "source_model": source,
        "keras_style_version": __version__,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }
