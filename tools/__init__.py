"""Repository tooling: demo, documentation generators, conformance harness, checks.

Not part of the installed ``npuc`` package (the package never imports it,
an import contract checks that); tests and ``tools/*.py`` scripts import it
from the repository root.
"""
