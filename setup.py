"""Package discovery for the folder-to-subpackage mapping in pyproject.toml.

The repo keeps its stages as top-level folders (frontend/, midend/, ...); they
install as `npuc.frontend`, `npuc.midend`, ... so nothing generic lands at the
top of site-packages. setuptools' own discovery cannot prefix names, so the
package list is computed here; everything else lives in pyproject.toml.
"""

from setuptools import find_packages, setup

FOLDERS = {
    "npuc": "npuc",
    "core": "npuc.core",
    "frontend": "npuc.frontend",
    "midend": "npuc.midend",
    "backend": "npuc.backend",
    "npu_sim": "npuc.npu_sim",
    "runtime": "npuc.runtime",
}

packages = []
for folder, name in FOLDERS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages)
