"""Sphinx configuration; the version comes from the installed package's metadata."""

from importlib.metadata import version as _version

project = "critical_path"
author = "critical_path contributors"
release = _version("django-critical-path")
version = ".".join(release.split(".")[:2])
extensions = ["sphinx.ext.intersphinx"]
intersphinx_mapping = {}
exclude_patterns = ["_build"]
html_theme = "alabaster"
