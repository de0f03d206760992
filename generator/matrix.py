"""The answer matrix: every combination of the questions that have fixed choices.

copier.yml is the one source of truth: a question with `choices` or of type
`bool` is part of the matrix; free-text questions keep their defaults.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import yaml

COPIER_YML = Path(__file__).resolve().parent.parent / "copier.yml"


@dataclasses.dataclass(frozen=True)
class Question:
    name: str
    help: str
    values: tuple  # str choices, or (False, True)
    labels: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Combination:
    answers: tuple[tuple[str, object], ...]

    @property
    def data(self) -> dict[str, object]:
        return dict(self.answers)

    @property
    def id(self) -> str:
        """e.g. `scratch-manual-add_loss` (a bool appears by name when true)."""
        parts = []
        for name, value in self.answers:
            if isinstance(value, bool):
                if value:
                    parts.append(name)
            else:
                parts.append(str(value))
        return "-".join(parts)


def questions(path: Path = COPIER_YML) -> list[Question]:
    """The matrix questions of copier.yml, in file order."""
    config = yaml.safe_load(path.read_text())
    found = []
    for name, spec in config.items():
        if name.startswith("_") or not isinstance(spec, dict):
            continue
        if spec.get("when") is False:
            continue
        if "choices" in spec:
            choices = spec["choices"]
            if isinstance(choices, dict):
                labels, values = tuple(choices), tuple(choices.values())
            else:
                labels = values = tuple(choices)
            found.append(Question(name, spec.get("help", ""), values, labels))
        elif spec.get("type") == "bool":
            found.append(
                Question(name, spec.get("help", ""), (False, True), ("no", "yes"))
            )
    return found


def combinations(path: Path = COPIER_YML) -> list[Combination]:
    """Every combination of the matrix questions' values."""
    qs = questions(path)
    return [
        Combination(tuple(zip((q.name for q in qs), values, strict=True)))
        for values in itertools.product(*(q.values for q in qs))
    ]


def by_id(combination_id: str, path: Path = COPIER_YML) -> Combination:
    known = {c.id: c for c in combinations(path)}
    try:
        return known[combination_id]
    except KeyError:
        raise KeyError(
            f"unknown combination {combination_id!r}; known: {', '.join(known)}"
        ) from None
