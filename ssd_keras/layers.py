"""Serialisable Keras layers of the SSD models (``keras.ops`` only).

Every layer has a complete ``get_config`` and is registered under the
``ssd_keras`` package, so ``keras.saving.load_model`` restores models in safe
mode without ``custom_objects`` once ``ssd_keras`` is imported.
"""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ssd_keras")
class L2Normalization(keras.layers.Layer):
    """Channel-wise L2 normalisation with a learned per-channel scale (ParseNet; SSD conv4_3).

    ``y = gamma * x / ||x||_2`` over the channel axis; ``gamma`` (one per
    channel) starts at ``gamma_init`` (20 in SSD).  Input/output ``(B, H, W, C)``.
    Computed in float32 even under mixed precision.  ``gamma_regularizer``:
    Caffe's ``Normalize`` layer in SSD has no ``param`` block, so its scale
    gets the net's weight decay (``decay_mult 1``) like a kernel; the VGG
    builder passes the kernels' regularizer.
    """

    def __init__(self, gamma_init=20.0, epsilon=1e-10, axis=-1, gamma_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.gamma_init = float(gamma_init)
        self.epsilon = float(epsilon)
        self.axis = int(axis)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)

    def build(self, input_shape):
        channels = input_shape[self.axis]
        self.gamma = self.add_weight(
            name="gamma", shape=(channels,),
            initializer=keras.initializers.Constant(self.gamma_init),
            regularizer=self.gamma_regularizer, trainable=True)

    def call(self, x):
        x32 = ops.cast(x, "float32")
        norm = ops.sqrt(ops.maximum(ops.sum(ops.square(x32), axis=self.axis, keepdims=True),
                                    self.epsilon))
        y = x32 / norm * ops.cast(self.gamma, "float32")
        return ops.cast(y, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "gamma_init": self.gamma_init,
                "epsilon": self.epsilon, "axis": self.axis,
                "gamma_regularizer": keras.regularizers.serialize(self.gamma_regularizer)}


@keras.saving.register_keras_serializable(package="ssd_keras")
class InputScaling(keras.layers.Layer):
    """The model's own preprocessing: RGB float ``[0, 255]`` in, backbone input out.

    ``mode="caffe"``: subtract the RGB ``mean`` then reorder channels to
    ``channel_order`` (``"bgr"`` for Caffe-trained VGG weights).
    ``mode="tf"``: ``x / 127.5 - 1`` (MobileNet).
    """

    def __init__(self, mode="caffe", mean=(123.0, 117.0, 104.0), channel_order="bgr", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode
        self.mean = tuple(float(m) for m in mean)
        self.channel_order = channel_order

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        x = x - ops.cast(ops.convert_to_tensor(self.mean), x.dtype)
        if self.channel_order == "bgr":
            x = ops.flip(x, axis=-1)
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "mean": list(self.mean),
                "channel_order": self.channel_order}
