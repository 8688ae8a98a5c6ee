"""Package discovery for the namespace mapping declared in pyproject.toml.

Each top-level folder is installed under `agentrm.`; subpackages are found here so that new
ones need no edit to the build configuration.
"""

from setuptools import find_packages, setup

ROOTS = {
    "agentrm": "agentrm",
    "agentrm.sandboxes": "sandboxes",
    "agentrm.verifiers": "verifiers",
    "agentrm.traces": "traces",
    "agentrm.cli": "cli",
}

packages = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=ROOTS)
