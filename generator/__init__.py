"""Reads the template's answer matrix from copier.yml and renders combinations.

`generator.matrix` needs only PyYAML; `generator.render` needs Copier.
"""
