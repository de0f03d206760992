"""Reads the template's answer matrix from copier.yml and renders combinations."""

from .matrix import Combination, combinations, questions
from .render import TEMPLATE_ROOT, render

__all__ = ["TEMPLATE_ROOT", "Combination", "combinations", "questions", "render"]
