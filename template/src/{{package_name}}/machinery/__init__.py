"""The machinery: what makes training fast and safe, kept apart from your code.

The files beside this folder are yours to read and edit: `model.py` (the
model, optimizer, loss and metrics), `training.py` (the steps, at its top),
`data.py` (which arrays make which split), `config.py` (the settings) and
`cli/` (the commands and their options). What is in here you should rarely
need to open:

- `execution/`: how steps run: `compilation` (scanned or unrolled calls,
  measured per model), `feeds` (batches to the devices, in memory or
  streamed), `parallel` (the device mesh, joining several processes),
  `launchers` (which processes make the run: flags, JAX's variables, or
  srun, mpirun, Kubernetes), `backend` (JAX's start, or one line saying
  why it cannot);
- `safety/`: what survives a crash: `checkpoints` (and what a resume
  checks), `fingerprint` (the model, optimizer, loss and metrics a checkpoint
  records), `saving` (outputs replaced as one set), `locks`, `stops`
  (SIGTERM and Ctrl-C at a step boundary);
- `tracking/`: what a run reports: `monitoring` (the best epoch, early
  stopping), `progress`, `tensorboard`, `artifacts` (the files a run writes),
  `runs` (a directory per run), `record` (`run.json`);
- `data/`: `splits` (a checked split and the checks that refuse a bad file),
  `convert` (a data directory from an `.npz`), `images` (one from a folder
  of images), `classes` (class names, in a data directory and a model);
- `errors`: the one-line messages every command reports.

The machinery imports one file of yours, `config.py`, for the settings
(`TrainConfig`). Everything else of yours reaches it as arguments: the
model and its steps from `training.py`, the `Dataset` from `data.py`, the
parsed options from `cli/`; nothing in here imports `model.py`,
`training.py`, `data.py` or `cli/`.
"""

# The project's package, for what is named after it: `python -m` lines, the
# compilation cache, environment variables.
PROJECT = __name__.rpartition(".")[0]
