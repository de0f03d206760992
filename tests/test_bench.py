"""The benchmark's worker times every epoch of each loop's own training code.

The full table (`nox -s bench`) takes half an hour and needs optax for the
reference row; this runs the worker on a few samples for the rows that need
only the test dependencies, so a template change that breaks the timing
(the loops must end each epoch in `Guard.after_epoch`) fails here, not in a
later bench run.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

from benchmarks.run import add_readme_cnn
from benchmarks.worker import README_CNN

EPOCHS = 3


def worker(row: str, *extra: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.worker", "--row", row, *extra]
    command += ["--hidden", "8", "--batch-size", "256", "--samples", "1024"]
    command += ["--epochs", str(EPOCHS)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cid", ["scratch-manual", "train_step-builtin-sample_weights"])
def test_worker_times_each_epoch_of_a_rendered_loop(rendered, cid):
    run = worker("digits_classifier", "--src", str(rendered[cid] / "src"))
    assert len(run["epoch_s"]) == EPOCHS
    assert all(seconds > 0 for seconds in run["epoch_s"])
    assert run["peak_rss_mb"] > 0
    # The decision a long run makes, measured (compilation.py) and reported.
    assert run["compilation"]["how"] in ("measured", "cached for this model")
    assert run["compilation"]["kind"] in ("scan", "unroll")


def test_worker_times_each_epoch_of_stock_fit():
    run = worker("stock")
    assert len(run["epoch_s"]) == EPOCHS
    assert all(seconds > 0 for seconds in run["epoch_s"])


def test_the_cnn_config_times_the_readmes_first_edit(rendered, tmp_path):
    project = rendered["scratch-manual"]
    # The bench adds exactly the lines the rendered README tells users to add.
    assert README_CNN in (project / "README.md").read_text()
    edited = shutil.copytree(project, tmp_path / "cnn")
    add_readme_cnn(edited / "src" / "digits_classifier" / "model.py")
    run = worker("digits_classifier", "--src", str(edited / "src"), "--cnn")
    assert len(run["epoch_s"]) == EPOCHS
    stock = worker("stock", "--cnn")
    assert len(stock["epoch_s"]) == EPOCHS
    # A project without the edit is refused, not timed as if it were a CNN.
    command = [sys.executable, "-m", "benchmarks.worker", "--row", "digits_classifier"]
    command += ["--src", str(project / "src"), "--cnn", "--hidden", "8"]
    command += ["--batch-size", "256", "--samples", "1024", "--epochs", "1"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0 and "lacks the CNN" in done.stderr


def test_the_startup_bench_times_every_command_line_row(tmp_path):
    output = tmp_path / "startup.json"
    command = [sys.executable, "-m", "benchmarks.startup", "--repeats", "1"]
    done = subprocess.run(
        [*command, "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["row"]: row["median_s"] for row in json.loads(output.read_text())}
    assert "--help" in rows and "python -c 'import keras'" in rows
    assert all(seconds > 0 for seconds in rows.values())
    assert "--help" in done.stdout  # the table


def test_the_worker_streams_a_data_directory_and_measures_anonymous_memory(
    rendered, tmp_path
):
    # The streaming bench's rows: a project training from a data directory
    # (which it streams) and stock fit() loading the same directory.
    from benchmarks.streaming import write_directory

    directory = tmp_path / "data"
    assert write_directory(directory, 1024, (28, 28)) > 1024 * 784
    project = rendered["scratch-manual"]
    run = worker(
        "digits_classifier", "--src", str(project / "src"), "--data-dir", str(directory)
    )
    assert len(run["epoch_s"]) == EPOCHS
    # RssAnon excludes the file's pages that the memory map brought in.
    assert 0 < run["peak_rss_anon_mb"] <= run["peak_rss_mb"]
    stock = worker("stock", "--data-dir", str(directory))
    assert len(stock["epoch_s"]) == EPOCHS


def test_the_images_bench_converts_with_one_worker_and_every_core(tmp_path):
    output = tmp_path / "images.json"
    command = [sys.executable, "-m", "benchmarks.images", "--images", "100"]
    done = subprocess.run(
        [*command, "--repeats", "1", "--size", "16", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(output.read_text())
    cores = os.cpu_count() or 1
    rows = {(row["images"], row["workers"]): row for row in measured["rows"]}
    assert set(rows) == {(images, w) for images in (50, 100) for w in {1, cores}}
    assert all(
        row["images_per_s"] > 0 and row["peak_rss_mb"] > 0 for row in rows.values()
    )
    assert measured["speedup_all_cores"] > 0 and "images/s" in done.stdout
