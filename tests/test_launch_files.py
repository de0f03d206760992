"""The rendered launch/ files, checked as far as a machine without a scheduler
allows: the JobSet manifest parses, runs the resume-safe command, and gives
every pod the variables the project's launchers.py reads, consistent with the
manifest's own counts. (launch/slurm.sbatch runs for real in the rendered
tests, through a stand-in srun: test_launchers.py.)"""

import json
import re
import subprocess
import sys

import pytest
import yaml

COMBINATION = "train_step-builtin"  # the launch files are the same in every one
PACKAGE = "digits_classifier"

# Run in the rendered project: what its launchers.settle makes of each pod's
# variables (the JobSet's coordinator label stood in for by localhost).
SETTLE = """
import json, sys
from digits_classifier.machinery.execution.launchers import settle
cluster = settle(None, None, None, environ=json.loads(sys.argv[1]), gpus=8)
print(json.dumps([cluster.num_processes, cluster.process_id, cluster.coordinator,
                  cluster.source, cluster.local_device_ids]))
"""


@pytest.fixture(scope="module")
def project(rendered):
    return rendered[COMBINATION]


@pytest.fixture(scope="module")
def jobset(project):
    return yaml.safe_load((project / "launch" / "jobset.yaml").read_text())


def pod_environment(container: dict, index: int) -> dict[str, str]:
    """A pod's variables as Kubernetes sets them: the completion index of an
    Indexed Job, the manifest's values with $(NAME) expanded, the coordinator
    label's value (pod 0's stable name) as localhost."""
    environ = {"JOB_COMPLETION_INDEX": str(index)}
    for variable in container["env"]:
        if "value" in variable:
            value = re.sub(
                r"\$\((\w+)\)", lambda m: environ[m[1]], str(variable["value"])
            )
        else:
            field = variable["valueFrom"]["fieldRef"]["fieldPath"]
            assert field == "metadata.labels['jobset.sigs.k8s.io/coordinator']", field
            value = "localhost"
        environ[variable["name"]] = value
    return environ


def test_the_jobset_gives_every_pod_what_the_project_reads(project, jobset):
    assert jobset["kind"] == "JobSet"
    [workers] = jobset["spec"]["replicatedJobs"]
    assert jobset["spec"]["coordinator"] == {
        "replicatedJob": workers["name"],
        "jobIndex": 0,
        "podIndex": 0,
    }
    job = workers["template"]["spec"]
    # Indexed: Kubernetes sets JOB_COMPLETION_INDEX, the process id.
    assert job["completionMode"] == "Indexed"
    pods = job["completions"]
    assert job["parallelism"] == pods, "every process must run at once"
    [container] = job["template"]["spec"]["containers"]
    settled = []
    for index in range(pods):
        environ = json.dumps(pod_environment(container, index))
        result = subprocess.run(
            [sys.executable, "-c", SETTLE, environ],
            cwd=project,
            env={"PYTHONPATH": str(project / "src"), "JAX_PLATFORMS": "cpu"},
            capture_output=True,
            text=True,
            check=True,
        )
        settled.append(json.loads(result.stdout))
    coordinators = {coordinator for _, _, coordinator, _, _ in settled}
    assert len(coordinators) == 1 and coordinators.pop().startswith("localhost:")
    assert [(count, index) for count, index, *_ in settled] == [
        (pods, index) for index in range(pods)
    ]
    # One pod per process: each uses all of its GPUs.
    assert all(
        source == "Kubernetes" and devices is None for *_, source, devices in settled
    )


def test_the_jobset_runs_the_resume_safe_command(jobset):
    job = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]
    pod = job["template"]["spec"]
    command = pod["containers"][0]["command"]
    assert command[:4] == ["python", "-m", PACKAGE, "train"]
    assert "--resume" in command
    assert any(arg.startswith("--checkpoint-dir=/shared/") for arg in command)
    assert any(arg.startswith("--output=/shared/") for arg in command)
    # SIGTERM before the kill leaves time for the checkpoint.
    assert pod["terminationGracePeriodSeconds"] >= 30


def test_the_sbatch_script_asks_slurm_for_what_the_readme_promises(project):
    script = (project / "launch" / "slurm.sbatch").read_text()
    directives = dict(
        line.removeprefix("#SBATCH --").partition("=")[::2]
        for line in script.splitlines()
        if line.startswith("#SBATCH --")
    )
    assert directives["ntasks-per-node"] == "1"  # one task per node, all its GPUs
    assert directives["signal"].startswith("B:USR1@")  # the script traps it
    assert "requeue" in directives
    assert "trap stop_and_requeue USR1" in script
    assert re.search(r"srun python -m \w+ train .*--resume", script, re.S)
    result = subprocess.run(["bash", "-n", project / "launch" / "slurm.sbatch"])
    assert result.returncode == 0, "the script does not parse"
