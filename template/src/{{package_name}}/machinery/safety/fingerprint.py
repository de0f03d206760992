"""What shapes a run's trajectory besides its settings: the model's architecture,
the optimizer and its schedule, the loss and the metrics, as plain JSON.

Checkpoints record it, and `--resume` compares it with the code as it is now:
after an edit in `model.py` a checkpoint would silently continue as a
different run, or fail later with a traceback, so the resume is refused with a
line that names the change instead.

The names of layers, the optimizer and the loss are left out: Keras numbers
them automatically (`dense_3`, `adam_1`) by what else the process has built,
which is not part of the run.
"""

from __future__ import annotations

import hashlib
import inspect
import json

import keras

PARTS = ("model", "optimizer", "loss", "metrics")


def of_run(model: keras.Model, optimizer, loss, metrics: list) -> dict[str, object]:
    """{part: JSON-able description} for each of PARTS."""
    return {
        "model": [_layer(layer) for layer in _layers(model)],
        "optimizer": describe(optimizer),
        "loss": describe(loss),
        # A metric's name is its key in the history: part of the run.
        "metrics": [describe(metric, keep_name=True) for metric in metrics],
    }


def changes(saved: dict, now: dict) -> list[str]:
    """One phrase per part that differs, e.g. "the optimizer changed since the
    checkpoint: Adam -> AdamW"; empty when the runs are alike."""
    return [
        f"the {part} changed since the checkpoint: "
        + _difference(saved.get(part), now[part], part)
        for part in PARTS
        if saved.get(part) != now[part]
    ]


def _layers(model: keras.Model) -> list:
    """Every layer, nested models' layers included, in a fixed order."""
    found = []
    for layer in model.layers:
        found.extend(_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return found


def _layer(layer) -> dict:
    try:
        config = layer.get_config()
    except NotImplementedError:  # a custom layer without get_config()
        config = {}
    config = {key: value for key, value in _plain(config).items() if key != "name"}
    return {
        "class_name": type(layer).__name__,
        "config": config,
        "variables": [list(v.shape) for v in layer.weights],
        **_code(layer),
    }


def describe(value, keep_name: bool = False) -> dict:
    """A Keras object's serialized config, plus its code if it is not Keras'."""
    described = _plain(keras.saving.serialize_keras_object(value))
    if not keep_name and isinstance(described.get("config"), dict):
        described["config"].pop("name", None)
    return {**described, **_code(value)}


def _code(value) -> dict:
    """A class of the project's own (a custom layer, loss or metric) computes
    what its source says, whatever its config: a digest of that source."""
    cls = type(value)
    if cls.__module__.split(".")[0] == "keras":
        return {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # defined interactively: no source to read
        return {}
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    return {"code": f"{cls.__qualname__} source {digest}"}


def _plain(value):
    """JSON types only: tuples become lists, as after a checkpoint's round trip."""
    return json.loads(json.dumps(value, default=repr))


def _difference(old, new, part: str) -> str:
    """The first difference between two descriptions of `part`, in words."""
    if old is None:
        return "the checkpoint does not record it"
    if isinstance(old, list) and len(old) != len(new):
        if part == "model":
            return f"{len(old)} layers -> {len(new)} layers"
        return f"{_short(old)} -> {_short(new)}"
    path, a, b = _first_difference(old, new, [])
    words = []
    for depth, key in enumerate(path):
        if depth == 0 and part in ("model", "metrics"):
            words.append(f"{part[:-1] if part == 'metrics' else 'layer'} {key + 1}")
            words.append(f"({_short(old[key])})")
        elif key not in ("config", "class_name", "code"):
            words.append(str(key))
    where = " ".join(words)
    if path[-1:] == ["code"]:  # "Name source <digest>": name the class only
        return f"{where + ': ' if where else ''}the source of {a.split()[0]} changed"
    return f"{where + ': ' if where else ''}{_short(a)} -> {_short(b)}"


def _first_difference(a, b, path: list):
    """(path, a's value, b's value) at the first place where a and b differ."""
    if type(a) is not type(b):
        return path, a, b
    if isinstance(a, dict):
        if a.get("class_name") != b.get("class_name"):
            return [*path, "class_name"], a.get("class_name"), b.get("class_name")
        for key in sorted(a.keys() | b.keys()):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), [*path, key])
    if isinstance(a, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, [*path, i])
    return path, a, b


def _short(value) -> str:
    """A value as a message shows it: a serialized object by its class."""
    if isinstance(value, dict) and "class_name" in value:
        value = value["class_name"]
    elif isinstance(value, list):
        value = "[" + ", ".join(_short(item) for item in value) + "]"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
