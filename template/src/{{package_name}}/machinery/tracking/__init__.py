"""What a run reports: the best epoch, progress, TensorBoard, its files, run.json."""
