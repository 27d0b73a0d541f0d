"""The one switch between TensorFlow and JAX for compiling functions of Keras models.

Under TensorFlow a function becomes a `tf.function` (gradients by tape);
under JAX it becomes a pure function of the models' variable values, jitted,
so the weights are arguments of the program rather than constants baked
into it. Values are read at each call: a variable assigned between calls
(e.g. instance-norm statistics measured on a whole image before tiling) is
seen by the next call without recompiling.
"""

import keras


def _stateless(fn, variables):
    """`fn(*args)` as a pure `fn(values, *args)` reading `variables` from `values`."""

    def pure(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return fn(*args)

    return pure


def compile_forward(fn, variables, input_signature=None):
    """Compiles a forward-only `fn(*args)` of Keras models (no gradient).

    Args:
        fn: a function of tensors built from keras.ops and Keras models.
        variables: the Keras variables `fn` reads (passed explicitly to JAX).
        input_signature: TensorFlow only: the `tf.TensorSpec`s to trace for
            once (e.g. a batch of one of any height and width).

    Returns:
        The compiled function (`fn` itself on other backends).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, input_signature=input_signature)
    if backend == "jax":
        import jax

        jitted = jax.jit(_stateless(fn, variables))
        return lambda *args: jitted([v.value for v in variables], *args)
    return fn


def compile_value_and_grad(loss_fn, variables):
    """Compiles `loss_fn(x, *targets) -> (total, parts)` into `(total, parts, grad)`.

    Args:
        loss_fn: the loss of an image batch `x`, built from keras.ops and
            Keras models.
        variables: the Keras variables `loss_fn` reads (the frozen VGG's).

    Raises:
        ValueError: on a backend other than TensorFlow and JAX.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(x, *targets):
            with tf.GradientTape() as tape:
                tape.watch(x)
                total, parts = loss_fn(x, *targets)
            return total, parts, tape.gradient(total, x)

        return step
    if backend == "jax":
        import jax

        value_and_grad = jax.jit(
            jax.value_and_grad(_stateless(loss_fn, variables), argnums=1, has_aux=True)
        )

        def step(x, *targets):
            (total, parts), grad = value_and_grad([v.value for v in variables], x, *targets)
            return total, parts, grad

        return step
    raise ValueError(f"The slow path supports the tensorflow and jax backends, not {backend!r}")
