"""Training-speed benchmark of the rendered projects (issue 5): `nox -s bench`."""
