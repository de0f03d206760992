"""Splits and their checks; a data directory from an .npz."""
