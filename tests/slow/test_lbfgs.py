"""The box-constrained L-BFGS of keras_style.slow.lbfgs."""

import numpy as np
import pytest

from keras_style.slow import lbfgs


def _quadratic(seed=0, n=3000, ill=100.0):
    """A separable ill-conditioned quadratic whose minimiser lies partly outside [0, 255]."""
    rng = np.random.default_rng(seed)
    curvature = np.exp(rng.uniform(0, np.log(ill), n)).astype(np.float32)
    target = rng.uniform(-40, 300, n).astype(np.float32)

    def fun(x):
        r = x.ravel() - target
        return float(np.sum(curvature * r * r)), (2 * curvature * r).reshape(x.shape)

    return fun, np.clip(target, 0, 255)


def test_reaches_the_box_constrained_minimum():
    fun, best = _quadratic()
    x0 = np.full((10, 100, 3), 128.0, np.float32)
    result = lbfgs.minimize(fun, x0, iterations=200, history=10)
    assert result.x.shape == x0.shape and result.x.dtype == np.float32
    assert result.x.min() >= 0 and result.x.max() <= 255
    np.testing.assert_allclose(result.x.ravel(), best, atol=0.05)
    assert result.loss == pytest.approx(fun(best.reshape(x0.shape))[0], rel=1e-4)


def test_one_evaluation_per_iteration_and_callback():
    fun, _ = _quadratic(seed=1)
    seen = []
    result = lbfgs.minimize(
        fun, np.zeros(3000, np.float32), iterations=30, callback=lambda x: seen.append(x.copy())
    )
    assert result.iterations == 30 and len(seen) == 30
    assert result.evaluations <= 31 + 3  # rare backtracking only
    losses = [fun(x)[0] for x in seen]
    assert all(np.diff(losses) <= 0)  # never goes up


def test_more_history_converges_faster_on_coupled_problems():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(60, 60)).astype(np.float32)
    hessian = a @ a.T + 0.1 * np.eye(60, dtype=np.float32)
    target = rng.uniform(50, 200, 60).astype(np.float32)

    def fun(x):
        r = x - target
        return float(r @ hessian @ r), 2 * hessian @ r

    x0 = np.full(60, 128.0, np.float32)
    short = lbfgs.minimize(fun, x0, iterations=40, history=3, first_step_rms=1.0).loss
    long = lbfgs.minimize(fun, x0, iterations=40, history=40, first_step_rms=1.0).loss
    assert long < short


def test_first_step_has_the_requested_rms():
    fun, _ = _quadratic(seed=3)
    x0 = np.full(3000, 128.0, np.float32)
    steps = []
    lbfgs.minimize(fun, x0, iterations=1, first_step_rms=2.0, callback=steps.append)
    assert np.sqrt(np.mean((steps[0] - x0) ** 2)) == pytest.approx(2.0, rel=0.05)


def test_stops_at_a_stationary_point():
    result = lbfgs.minimize(lambda x: (0.0, np.zeros_like(x)), np.ones(5, np.float32), 10)
    assert result.iterations == 0 and result.evaluations == 1


@pytest.mark.parametrize("x0, iterations, history", [(np.zeros(0), 5, 5), (np.ones(3), 0, 5)])
def test_bad_arguments(x0, iterations, history):
    with pytest.raises(ValueError, match="minimize needs"):
        lbfgs.minimize(lambda x: (0.0, x), x0, iterations, history=history)
