"""How steps run: compiled calls, the batches that feed them, the devices."""
