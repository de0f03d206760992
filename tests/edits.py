"""The first edits users make to a rendered project, as text edits of its files.

Each is what the rendered README and `model.py` tell a user to do: another
architecture (a CNN with batch normalization and dropout), another optimizer
with a learning-rate schedule that depends on the run's length, an added
metric, another loss. `apply` fails loudly when an edit no longer applies to
the template, so the tests built on it cannot silently test nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

CNN = (
    "    x = preprocess(inputs, mean, variance)\n    x = layers.Flatten()(x)\n",
    "    x = preprocess(inputs, mean, variance)\n"
    # A conv bias feeding BatchNormalization: its gradient is round-off noise,
    # which Adam amplifies; the device-parallel tests must live with that.
    '    x = layers.Conv2D(16, 3, padding="same")(x)\n'
    "    x = layers.BatchNormalization()(x)\n"
    '    x = layers.Activation("relu")(x)\n'
    "    x = layers.MaxPooling2D()(x)\n"
    "    x = layers.Dropout(0.25)(x)\n"
    "    x = layers.Flatten()(x)\n",
)
ADAMW_COSINE = (
    "    return keras.optimizers.Adam(learning_rate)\n",
    "    schedule = keras.optimizers.schedules.CosineDecay(\n"
    "        learning_rate, decay_steps=total_steps\n"
    "    )\n"
    "    return keras.optimizers.AdamW(schedule, weight_decay=1e-4)\n",
)
# The added metric keeps the weighted variant's prefix where there is one.
TOP3 = (
    re.compile(
        r"    return \[keras.metrics.SparseCategoricalAccuracy"
        r'\(name=(prefix \+ )?"accuracy"\)\]\n'
    ),
    "    return [\n"
    r'        keras.metrics.SparseCategoricalAccuracy(name=\1"accuracy"),'
    "\n"
    r'        keras.metrics.SparseTopKCategoricalAccuracy(k=3, name=\1"top3"),'
    "\n    ]\n",
)
SMOOTHED_LOSS = (
    "    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)\n",
    "    return SmoothedCrossentropy()\n"
    "\n"
    "\n"
    "@keras.saving.register_keras_serializable()\n"
    "class SmoothedCrossentropy(keras.losses.Loss):\n"
    "    def call(self, y_true, y_pred):\n"
    '        labels = keras.ops.cast(y_true, "int32")\n'
    "        y_true = keras.ops.one_hot(labels, y_pred.shape[-1])\n"
    "        return keras.losses.categorical_crossentropy(\n"
    "            y_true, y_pred, from_logits=True, label_smoothing=0.1\n"
    "        )\n",
)
# All four at once, on model.py: what a user's first afternoon looks like.
FIRST_EDITS = [CNN, ADAMW_COSINE, TOP3, SMOOTHED_LOSS]
# And the one knob the tests' messages point to when a model learns slower:
# batch normalization's statistics (momentum 0.99) and a schedule decaying to
# zero need more than 8 epochs of 4 steps before the test accuracy is sound.
MORE_LEARNING_EPOCHS = ("LEARNING_EPOCHS = 8\n", "LEARNING_EPOCHS = 30\n")

# model.py's switch for Keras' random image layers (issue 27).
AUGMENTATION_ON = ("AUGMENT = False\n", "AUGMENT = True\n")

# Edits made after a checkpoint was written, which a resume must refuse.
BACK_TO_ADAM = (ADAMW_COSINE[1], "    return keras.optimizers.Adam(learning_rate)\n")
WIDER_CONV = ("Conv2D(16, 3,", "Conv2D(24, 3,")
# A real defect: the train step running the model in inference mode.
INFERENCE_MODE_TRAINING = ("training=True,", "training=False,")


def apply(path: Path, edits: list) -> None:
    """Applies (old, new) edits to a file; `old` is text or a compiled regex."""
    text = path.read_text()
    for old, new in edits:
        if isinstance(old, re.Pattern):
            text, count = old.subn(new, text)
        else:
            count = text.count(old)
            text = text.replace(old, new)
        assert count, f"{path.name}: the edit no longer applies: {old!r}"
    path.write_text(text)
