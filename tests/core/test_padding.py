import numpy as np
import pytest

from keras_style.core import padding


def _x():
    return np.arange(2 * 6 * 7 * 3, dtype=np.float32).reshape(2, 6, 7, 3)


@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (4, 2, 1, 3), (0, 0, 5, 0)])
@pytest.mark.parametrize("max_inputs", [None, 4])
def test_reflect_pad_2d_matches_numpy(pads, max_inputs):
    top, bottom, left, right = pads
    expected = np.pad(_x(), [(0, 0), (top, bottom), (left, right), (0, 0)], mode="reflect")
    out = padding.reflect_pad_2d(_x(), *pads, max_inputs=max_inputs)
    assert np.array_equal(np.asarray(out), expected)


@pytest.mark.parametrize("amount", [1, 3])
def test_edge_pad_matches_numpy(amount):
    expected = np.pad(_x(), [(0, 0), (amount, amount), (amount, amount), (0, 0)], mode="edge")
    assert np.array_equal(np.asarray(padding.edge_pad(_x(), amount, max_inputs=4)), expected)


def test_concatenate_in_a_tree_of_small_ops_is_the_same_concatenation():
    pieces = [_x()[:, i : i + 1] for i in range(6)]
    for max_inputs in (None, 2, 4):
        assert np.array_equal(np.asarray(padding.concatenate(pieces, 1, max_inputs)), _x())


@pytest.mark.parametrize("mode", ["reflect", "edge"])
@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (4, 2, 1, 3)])
def test_gather_pad_2d_matches_numpy(mode, pads):
    top, bottom, left, right = pads
    expected = np.pad(_x(), [(0, 0), (top, bottom), (left, right), (0, 0)], mode=mode)
    assert np.array_equal(np.asarray(padding.gather_pad_2d(_x(), *pads, mode=mode)), expected)


def test_gather_pad_2d_traces_for_any_size():
    import tensorflow as tf

    pad = tf.function(
        lambda x: padding.gather_pad_2d(x, 2, 2, 2, 2),
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
    )
    for shape in [(1, 5, 9, 3), (2, 6, 7, 3)]:
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        expected = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
        assert np.array_equal(pad(x).numpy(), expected)


def test_gather_pad_2d_rejects_unknown_modes():
    with pytest.raises(ValueError, match="mode"):
        padding.gather_pad_2d(_x(), 1, 1, 1, 1, mode="wrap")
