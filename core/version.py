"""npuc's version, as installed (``0.0.0+unknown`` in a source tree without install).

In the core so that every layer can record it (the artifact sidecar does)
without importing the top-level package.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("npuc")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
