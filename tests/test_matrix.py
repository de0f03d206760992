import yaml
from conftest import COMBINATIONS, ROOT

from generator.matrix import questions


def test_matrix_is_read_from_copier_yml():
    config = yaml.safe_load((ROOT / "copier.yml").read_text())
    assert [q.name for q in questions()] == [
        "training_loop",
        "metrics",
        "add_loss",
        "sample_weights",
    ]
    assert {q.name: set(q.values) for q in questions()} == {
        "training_loop": set(config["training_loop"]["choices"].values()),
        "metrics": set(config["metrics"]["choices"].values()),
        "add_loss": {False, True},
        "sample_weights": {False, True},
    }


def test_sixteen_distinct_combinations():
    assert len(COMBINATIONS) == 16
    assert len({c.id for c in COMBINATIONS}) == 16
    assert len({tuple(sorted(c.data.items())) for c in COMBINATIONS}) == 16
    assert "scratch-manual-add_loss-sample_weights" in {c.id for c in COMBINATIONS}


def test_every_question_has_help():
    config = yaml.safe_load((ROOT / "copier.yml").read_text())
    for name in ("project_name", "package_name", *(q.name for q in questions())):
        assert config[name].get("help"), name
