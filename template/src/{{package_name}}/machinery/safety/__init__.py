"""What survives a crash: checkpoints, outputs written as one set, locks, stops."""
