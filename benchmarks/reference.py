"""The ceiling: a hand-written JAX + optax trainer, as fast as we know how, of
the template's MLP or of the README's first edit, a small CNN in front of it.

The whole dataset lives on the device; each epoch is one jitted call that
gathers batches by index inside a `lax.scan` over the steps, with the training
state donated so XLA updates it in place. With `unroll=K`, an epoch is instead
calls of K steps written out one after another (no loop): on XLA's CPU backend
a convolution's kernel gradient is much faster outside a loop body, so for the
CNN that is the faster way (`nox -s bench` runs both and compares with the
faster).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def init_params(key, sizes):
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        key, sub = jax.random.split(key)
        limit = np.sqrt(6 / (fan_in + fan_out))  # Glorot uniform, as Keras' Dense
        kernel = jax.random.uniform(sub, (fan_in, fan_out), minval=-limit, maxval=limit)
        params.append((kernel, jnp.zeros(fan_out)))
    return params


def init_conv(key, filters: int, channels: int = 1, size: int = 3):
    fan_in, fan_out = size * size * channels, size * size * filters
    limit = np.sqrt(6 / (fan_in + fan_out))  # Glorot uniform, as Keras' Conv2D
    kernel = jax.random.uniform(
        key, (size, size, channels, filters), minval=-limit, maxval=limit
    )
    return kernel, jnp.zeros(filters)


def forward(params, x):
    """`params`: an optional conv layer (a 4-D kernel) first, then dense layers.

    The conv layer is README's first edit: a 3x3 "same" convolution with relu
    and 2x2 max pooling over (N, H, W, 1) images, before the MLP.
    """
    if params[0][0].ndim == 4:
        (kernel, bias), params = params[0], params[1:]
        x = jax.lax.conv_general_dilated(
            x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        x = jax.nn.relu(x + bias)
        x = jax.lax.reduce_window(
            x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
        )
    x = x.reshape(x.shape[0], -1)
    for kernel, bias in params[:-1]:
        x = jax.nn.relu(x @ kernel + bias)
    kernel, bias = params[-1]
    return x @ kernel + bias


def make_epoch(optimizer, batch_size: int, steps: int, unroll: int = 0):
    def loss_fn(params, x, y):
        logits = forward(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    # The data is read by the steps, not carried through the scan: a carried
    # copy of it made every epoch about 10% slower here.
    def step(carry, index, x_all, y_all):
        params, opt_state = carry
        x, y = x_all[index], y_all[index]
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def epoch(params, opt_state, x_all, y_all, order):
        indices = order[: steps * batch_size].reshape(steps, batch_size)
        (params, opt_state), losses = jax.lax.scan(
            lambda carry, index: step(carry, index, x_all, y_all),
            (params, opt_state),
            indices,
        )
        return params, opt_state, losses.mean()

    if not unroll:
        return jax.jit(epoch, donate_argnums=(0, 1))

    def call(params, opt_state, x_all, y_all, indices):
        carry = (params, opt_state)
        for index in indices:  # unrolled: one program, no loop
            carry, loss = step(carry, index, x_all, y_all)
        return *carry, loss

    call = jax.jit(call, donate_argnums=(0, 1))

    def unrolled_epoch(params, opt_state, x_all, y_all, order):
        indices = order[: steps * batch_size].reshape(steps, batch_size)
        for start in range(0, steps - steps % unroll, unroll):
            rows = jnp.asarray(indices[start : start + unroll])
            params, opt_state, loss = call(params, opt_state, x_all, y_all, rows)
        return params, opt_state, loss

    return unrolled_epoch


def train(
    x: np.ndarray,
    y: np.ndarray,
    hidden,
    batch_size,
    epochs,
    conv_filters: int = 0,
    lr=1e-3,
    on_epoch_end=None,
    unroll: int = 0,
):
    """Trains on images `x` (N, H, W); with `conv_filters`, the CNN; with
    `unroll`, in calls of that many unrolled steps instead of a scan."""
    conv_key, dense_key = jax.random.split(jax.random.key(0))
    if conv_filters:
        x = x[..., None]
        features = x.shape[1] // 2 * (x.shape[2] // 2) * conv_filters
        conv = [init_conv(conv_key, conv_filters)]
    else:
        features, conv = int(np.prod(x.shape[1:])), []
    sizes = [features, *hidden, int(y.max()) + 1]
    params = conv + init_params(dense_key, sizes)
    optimizer = optax.adam(lr)
    opt_state = optimizer.init(params)
    x_all, y_all = jax.device_put(x), jax.device_put(y)
    epoch = make_epoch(optimizer, batch_size, len(x) // batch_size, unroll)
    rng = np.random.default_rng(1)
    for _ in range(epochs):
        # Drawn on the host, as the generated loops do: jax.random.permutation
        # sorts on the device and made an epoch 20-30% longer on 2 CPU cores.
        order = rng.permutation(len(x)).astype(np.int32)
        params, opt_state, loss = epoch(params, opt_state, x_all, y_all, order)
        # The loss reaches the host once per epoch, as the generated loops'
        # logs do; it also makes the epoch's end a point in wall time.
        loss = float(loss)
        if on_epoch_end is not None:
            on_epoch_end()
    return loss
