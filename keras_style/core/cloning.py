"""Copies of a Functional network with some layers replaced, weights carried over.

The one implementation behind the fast path's inference graph, its tiling
copy (norms with shared statistics) and the export's quantization-friendly
rewrite: `keras.models.clone_model` with a layer factory, then every
original layer's weights copied into the layer that replaced it.
"""

import keras


def copy_layer(layer, cls=None, **overrides):
    """A new, unbuilt layer from `layer`'s config (`overrides` replace config entries).

    Args:
        layer: the layer to copy.
        cls: the class to build (default: `layer`'s own); it must accept
            `layer`'s config.
        **overrides: config entries to replace, e.g. `dtype="float32"`.
    """
    return (cls or layer.__class__).from_config({**layer.get_config(), **overrides})


def clone_functional(model, clone_layer=copy_layer, call_function=None):
    """Clones a Functional `model`, each layer made by `clone_layer`, and copies the weights.

    Args:
        model: a Functional `keras.Model`.
        clone_layer: `f(layer) -> new layer` (default: `copy_layer`). A new
            layer may have more weights than the original (e.g. statistics):
            the original's weights fill its first ones, the rest keep their
            initial values.
        call_function: optional `f(original, new, *args, **kwargs) -> outputs`
            deciding how each new layer is called while the graph is rebuilt
            (it may call other layers instead, e.g. to fuse a chain); layers
            made there keep their own weights.

    Returns:
        The new Functional `keras.Model`, same inputs and outputs.
    """
    originals = {}  # id(new layer) -> original layer

    def clone(layer):
        new = clone_layer(layer)
        originals[id(new)] = layer
        return new

    kwargs = {}
    if call_function is not None:
        kwargs["call_function"] = lambda new, *args, **kw: call_function(
            originals[id(new)], new, *args, **kw
        )
    copy = keras.models.clone_model(model, clone_function=clone, **kwargs)
    for new in copy.layers:
        old = originals.get(id(new))
        if old is not None and old.weights:
            new.set_weights([*old.get_weights(), *new.get_weights()[len(old.weights) :]])
    return copy
