"""The pretrained styles bundled with the package, and model lookup by name or path.

Each bundled style is two files in `keras_style/assets/styles/`:

* `<name>.weights.h5` — the weights of a `TransformerNet`, stored in float16
  (a regular Keras weights file, only with half-precision datasets), so that
  even the full-width network (1.7M parameters) stays under `MAX_STYLE_BYTES`;
* `<name>.json` — its card: `name`, `width` (the network's channel
  multiplier), `painting` (title, artist, source and licence of the style
  image), and whatever else the trainer recorded (training command or
  config, metrics).

At load time the network is rebuilt in float32 from `width` and the weights
are cast back to float32, so a loaded style behaves like any trained model.
"""

import json
import os
import re
import tempfile
from pathlib import Path

import h5py
import keras
import numpy as np

from keras_style.core.images import atomic_write
from keras_style.core.transformer_net import TransformerNet

#: Folder holding the bundled styles (package data).
ASSETS_DIR = Path(__file__).parents[1] / "assets" / "styles"

#: Largest size of one bundled style (weights plus card), in bytes: 4 MiB.
MAX_STYLE_BYTES = 4 * 1024 * 1024

_WEIGHTS_SUFFIX = ".weights.h5"
_CARD_SUFFIX = ".json"
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def _folder(assets_dir):
    return Path(assets_dir) if assets_dir is not None else ASSETS_DIR


def _paths(name, assets_dir):
    folder = _folder(assets_dir)
    return folder / f"{name}{_WEIGHTS_SUFFIX}", folder / f"{name}{_CARD_SUFFIX}"


def list_styles(assets_dir=None):
    """Names of the bundled styles that are installed (both weights and card present), sorted.

    Args:
        assets_dir: folder to look in (default: the package's `ASSETS_DIR`).

    Returns:
        A sorted list of style names; empty when no style is installed.
    """
    folder = _folder(assets_dir)
    if not folder.is_dir():
        return []
    names = (p.name[: -len(_CARD_SUFFIX)] for p in folder.glob(f"*{_CARD_SUFFIX}"))
    return sorted(n for n in names if _NAME_PATTERN.match(n) and _paths(n, folder)[0].is_file())


def _check_known(name, assets_dir):
    available = list_styles(assets_dir)
    if name not in available:
        listing = ", ".join(available) if available else "none are installed"
        raise ValueError(f"Unknown style {name!r}; available styles: {listing}")


def style_card(name, assets_dir=None):
    """The JSON card of a bundled style as a dict (name, width, painting, training, metrics).

    Raises:
        ValueError: if `name` is not an installed style, or its card is unreadable.
    """
    _check_known(name, assets_dir)
    card_path = _paths(name, assets_dir)[1]
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"The card of style {name!r} ({card_path}) is unreadable: {e}") from e
    if not isinstance(card, dict) or "width" not in card:
        raise ValueError(f"The card of style {name!r} ({card_path}) has no 'width'")
    return card


def load_style(name, assets_dir=None):
    """Builds the float32 `TransformerNet` of a bundled style.

    Args:
        name: one of `list_styles()`.
        assets_dir: folder to look in (default: the package's `ASSETS_DIR`).

    Returns:
        A `TransformerNet` mapping (N, H, W, 3) [0, 255] images to stylized ones.

    Raises:
        ValueError: for an unknown name (the message lists the available
            ones) or a damaged style file.
    """
    card = style_card(name, assets_dir)
    model = TransformerNet(width=card["width"], head=card.get("head", "tanh"), name=name)
    weights_path = _paths(name, assets_dir)[0]
    try:
        model.load_weights(weights_path)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"The weights of style {name!r} ({weights_path}) are damaged: {e}") from e
    return model


def save_bundled_style(model, name, card, assets_dir=None, max_bytes=MAX_STYLE_BYTES):
    """Writes a trained network as a bundled style: float16 weights plus a JSON card.

    Both files are written atomically (temporary file, then rename), weights
    first: a style only counts as installed once its card exists, so an
    interrupted save never leaves a half-installed style.

    Args:
        model: a trained `TransformerNet`.
        name: the style's name: lowercase letters, digits and underscores.
        card: a JSON-serializable dict describing the style; must contain
            `painting` (title, artist, source, licence). `name` and `width`
            are filled in from the arguments and the model.
        assets_dir: destination folder (default: the package's `ASSETS_DIR`);
            created if missing.
        max_bytes: refuse styles whose two files together are larger.

    Returns:
        The path of the weights file.

    Raises:
        ValueError: on a bad name, model or card, or when the style is
            larger than `max_bytes` (nothing is written then).
    """
    card = _full_card(model, name, card)
    card_text = json.dumps(card, indent=2, sort_keys=True) + "\n"
    weights_path, card_path = _paths(name, assets_dir)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(weights_path) as tmp:
        _save_float16_weights(model, tmp)
        size = tmp.stat().st_size + len(card_text.encode("utf-8"))
        if size > max_bytes:
            raise ValueError(
                f"Style {name!r} takes {size} bytes, more than the {max_bytes}-byte limit; "
                "train a narrower network (width 0.5 or 0.25)"
            )
    with atomic_write(card_path) as tmp:
        tmp.write_text(card_text, encoding="utf-8")
    return weights_path


def bundle_trained_model(model_path, name, painting, assets_dir=None, figures=None):
    """Installs a trained `model.keras` as bundled style `name`, recording how it was trained.

    The card gets the painting's attribution and, under `training`, the
    training configuration saved beside the model (the work dir's
    `config.json`, if any), its runs (`runs.json`: steps, wall time and
    command of each run) and the model's file name, so anyone can retrain
    the style with the same preset. A network that continued a bundled
    style (`init_from` naming one) also keeps that style's own `training`
    entry under `training.started_from`, so a card tells the whole lineage.

    Args:
        model_path: a `.keras` file written by `training.train` (e.g.
            `runs/great_wave/model.keras`).
        name: the style's name (lowercase letters, digits, underscores).
        painting: attribution dict: at least `title`, `artist`, `license`.
        assets_dir: destination folder (default: the package's `ASSETS_DIR`).
        figures: quality figures to record in the card (e.g. this style's
            entry of `training.report_styles`' report.json).

    Returns:
        The path of the written weights file.

    Raises:
        ValueError: if the model cannot be loaded, is not a `TransformerNet`,
            or the attribution is incomplete.
    """
    missing = [k for k in ("title", "artist", "license") if not (painting or {}).get(k)]
    if missing:
        raise ValueError(f"The painting's attribution lacks {', '.join(missing)}")
    path = Path(model_path)
    model = load_model_file(path)
    training = {"model_file": path.name, **_work_dir_record(path.parent)}
    parent = _lineage((training["config"] or {}).get("init_from"), assets_dir)
    if parent is not None:
        training["started_from"] = parent
    card = {"painting": dict(painting), "training": training}
    if figures:
        card["figures"] = figures
    return save_bundled_style(model, name, card, assets_dir=assets_dir)


def _work_dir_record(workdir):
    """{"config", "runs"} of a training work dir (None where its file is missing)."""
    record = {}
    for key in ("config", "runs"):
        saved = Path(workdir) / f"{key}.json"
        record[key] = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else None
    return record


def _lineage(parent, assets_dir):
    """The training record of what a network started from (its `init_from`), or None.

    A bundled style gives its card's `training` entry; a checkpoint folder
    (`<workdir>/checkpoints/ckpt-N`, where a job with another schedule or loss
    took over) gives that work dir's config and runs, and in turn what that
    job started from.
    """
    if not parent:
        return None
    if is_style_name(parent) and parent in list_styles(assets_dir):
        return style_card(parent, assets_dir).get("training")
    checkpoint = Path(parent)
    if not (checkpoint / "net.weights.h5").is_file():
        return None
    record = {"checkpoint": str(checkpoint), **_work_dir_record(checkpoint.parent.parent)}
    grandparent = _lineage((record["config"] or {}).get("init_from"), assets_dir)
    if grandparent is not None:
        record["started_from"] = grandparent
    return record


def _full_card(model, name, card):
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise ValueError(f"Style names use lowercase letters, digits and underscores; got {name!r}")
    if not isinstance(model, TransformerNet):
        raise ValueError(f"Bundled styles are TransformerNet weights; got {type(model).__name__}")
    if not isinstance(card, dict) or "painting" not in card:
        raise ValueError("The style card must be a dict with a 'painting' entry (attribution)")
    full = {**card, "name": name, "width": model.width, "head": model.head}
    full["weights_dtype"] = "float16"
    try:
        json.dumps(full)
    except TypeError as e:
        raise ValueError(f"The style card is not JSON-serializable: {e}") from e
    return full


def _save_float16_weights(model, path):
    """Saves `model`'s weights as a Keras `.weights.h5` file with float16 datasets."""
    with tempfile.TemporaryDirectory() as folder:
        full = Path(folder) / f"full{_WEIGHTS_SUFFIX}"
        model.save_weights(full)
        with h5py.File(full, "r") as src, h5py.File(path, "w") as dst:
            dst.attrs.update(src.attrs)
            src.visititems(lambda key, item: _copy_item(key, item, dst))


def _copy_item(key, item, dst):
    if isinstance(item, h5py.Group):
        dst.require_group(key).attrs.update(item.attrs)
        return
    data = item[()]
    if np.issubdtype(np.asarray(data).dtype, np.floating):
        data = np.asarray(data, dtype=np.float16)
    dst.create_dataset(key, data=data).attrs.update(item.attrs)


def resolve_model(source, assets_dir=None):
    """Turns a bundled style name, a saved model path or a model into a `keras.Model`.

    An existing file wins over a style of the same name.

    Args:
        source: a `keras.Model` (returned as is), a path to a `.keras` file
            (loaded with `keras.saving.load_model`), or a bundled style name.
        assets_dir: where to look up style names (default: `ASSETS_DIR`).

    Raises:
        ValueError: if `source` is neither a loadable model file nor an
            installed style (the message lists the installed styles).
    """
    if isinstance(source, keras.Model):
        return source
    if not isinstance(source, (str, Path)):
        raise ValueError(
            f"Expected a keras.Model, a .keras path or a style name; got {type(source).__name__}"
        )
    path = Path(source)
    if path.is_file():
        return load_model_file(path)
    if is_style_name(source) and _NAME_PATTERN.match(source):
        return load_style(source, assets_dir)
    available = ", ".join(list_styles(assets_dir)) or "none are installed"
    raise ValueError(
        f"{source} is neither a model file nor a bundled style; available styles: {available}"
    )


def is_style_name(source):
    """Whether `source` names a bundled style rather than a file.

    A string without a folder separator that is not an existing path: an
    existing file wins over a style of the same name. Whether such a style is
    installed is `list_styles()`'s answer.
    """
    return isinstance(source, str) and os.path.sep not in source and not Path(source).exists()


def load_model_file(path):
    """Loads a trained network from a `.keras` file, with the package's layers registered.

    Raises:
        ValueError: if the file is missing, is not a `.keras` file, or does
            not load (corrupt archive, unknown layer...).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Model file not found: {path}")
    if path.suffix != ".keras":
        raise ValueError(f"{path} is not a Keras model file (expected a .keras file)")
    try:
        return keras.saving.load_model(path, compile=False)  # inference only
    except Exception as e:  # Keras raises many types for corrupt or foreign archives.
        raise ValueError(f"Cannot load the model {path}: {e}") from e
