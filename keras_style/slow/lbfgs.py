"""A small box-constrained L-BFGS for images: one loss-and-gradient evaluation per iteration.

SciPy's L-BFGS-B is the textbook solver, but on images it is slow for two
reasons measured on this project's 2-core CPU at 384 px (332k variables):
its Fortran bookkeeping (generalized Cauchy point, subspace minimisation in
float64) costs 0.05 to 0.3 s per iteration, a third to most of a bfloat16
VGG evaluation; and its line search occasionally spends extra evaluations.
Style transfer needs neither: like the reference Torch implementation of
Gatys et al., this solver takes the quasi-Newton step at unit length (the
first step scaled to a given RMS pixel change) and only backtracks when the
loss goes up. Box constraints are handled by projection: variables at a bound
whose gradient points outwards are frozen for the step, and the step is
clipped to the box.

All vectors are float32 numpy arrays; the evaluation function may run on any
backend or device.
"""

import dataclasses

import numpy as np

#: Halvings of a step that raised the loss before giving up on the iteration.
MAX_BACKTRACKS = 4


@dataclasses.dataclass
class LBFGSResult:
    """Outcome of `minimize`.

    Attributes:
        x: the best point found (float32, input shape).
        loss: its loss.
        iterations: iterations run.
        evaluations: loss-and-gradient evaluations used.
    """

    x: np.ndarray
    loss: float
    iterations: int
    evaluations: int


class _History:
    """The last `size` curvature pairs (s, y) and the two-loop recursion over them."""

    def __init__(self, size):
        self.size = size
        self.pairs = []  # (s, y, 1 / y.s), oldest first

    def add(self, s, y):
        ys = float(np.dot(y, s))
        if ys <= 1e-10 * float(np.dot(y, y)):
            return  # no positive curvature along s: the pair would break the Hessian model
        self.pairs.append((s, y, 1.0 / ys))
        if len(self.pairs) > self.size:
            self.pairs.pop(0)

    def direction(self, g):
        """-H g for the inverse-Hessian model of the stored pairs (H0 = gamma I)."""
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            alpha = rho * float(np.dot(s, q))
            q -= alpha * y
            alphas.append(alpha)
        s, y, rho = self.pairs[-1]
        q *= 1.0 / (rho * float(np.dot(y, y)))  # gamma = s.y / y.y
        for (s, y, rho), alpha in zip(self.pairs, reversed(alphas), strict=True):
            beta = rho * float(np.dot(y, q))
            q += (alpha - beta) * s
        return -q


def _free(x, g, lower, upper):
    """Mask of variables allowed to move: not at a bound that the descent direction leaves."""
    return ~(((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0)))


def minimize(
    fun, x0, iterations, history=10, lower=0.0, upper=255.0, first_step_rms=2.0, callback=None
):
    """Minimises `fun` over the box [lower, upper] with L-BFGS.

    Args:
        fun: `fun(x) -> (loss, gradient)` for a float32 array shaped like x0.
        x0: starting point (inside the box after clipping).
        iterations: iterations to run (one evaluation each, plus rare
            backtracking).
        history: curvature pairs kept (memory: 2 * history copies of x).
        lower, upper: the box.
        first_step_rms: RMS change of the first step (before any curvature
            is known the step length is a guess in the variables' units).
        callback: `callback(x)` after every iteration.

    Returns:
        An `LBFGSResult`.

    Raises:
        ValueError: on an empty x0, non-positive iterations or history.
    """
    if np.size(x0) == 0 or iterations < 1 or history < 1:
        raise ValueError(
            f"minimize needs a non-empty x0 and iterations, history >= 1; got size "
            f"{np.size(x0)}, iterations {iterations}, history {history}"
        )
    shape = np.shape(x0)
    x = np.clip(np.asarray(x0, np.float32).ravel(), lower, upper)

    def evaluate(point):
        loss, grad = fun(point.reshape(shape))
        return float(loss), np.asarray(grad, np.float32).ravel()

    loss, g = evaluate(x)
    evaluations, done, memory = 1, 0, _History(history)
    while done < iterations:
        d = _direction(memory, x, g, lower, upper, first_step_rms)
        if d is None:
            break  # stationary point in the box
        x_new, loss_new, g_new, used = _step(evaluate, x, d, loss, lower, upper)
        evaluations += used
        if x_new is None:
            break  # no decrease even for small steps: converged to float precision
        memory.add(x_new - x, g_new - g)
        x, loss, g = x_new, loss_new, g_new
        done += 1
        if callback is not None:
            callback(x.reshape(shape))
    return LBFGSResult(x.reshape(shape), loss, done, evaluations)


def _direction(memory, x, g, lower, upper, first_step_rms):
    """The search direction, or None at a stationary point.

    Variables at a bound that the step would leave are frozen. Without
    curvature pairs (or when the model gives no descent) the direction is the
    gradient scaled to an RMS change of `first_step_rms`.
    """
    free = _free(x, g, lower, upper)
    g_free = np.where(free, g, 0.0).astype(np.float32)
    if memory.pairs:
        d = np.where(free, memory.direction(g_free), 0.0).astype(np.float32)
        if float(np.dot(d, g_free)) < 0:
            return d
        memory.pairs.clear()  # the model lost descent (noisy gradients): restart
    norm = float(np.linalg.norm(g_free))
    if norm == 0.0:
        return None
    return -g_free * np.float32(first_step_rms * np.sqrt(g_free.size) / norm)


def _step(evaluate, x, d, loss, lower, upper):
    """Unit step along d (clipped to the box), halved while the loss rises.

    Returns:
        (x, loss, gradient, evaluations used); x is None when every trial
        raised the loss.
    """
    t = 1.0
    for used in range(1, MAX_BACKTRACKS + 2):
        x_new = np.clip(x + t * d, lower, upper)
        loss_new, g_new = evaluate(x_new)
        if loss_new <= loss or not np.isfinite(loss):
            return x_new, loss_new, g_new, used
        t *= 0.5
    return None, loss, None, used
