"""Sphinx configuration of the tfsmooth documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors).

API pages live in ``docs/api/`` (one page per subpackage, collected by a glob toctree in
``docs/api/index.rst``).
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tfsmooth import __version__  # noqa: E402

project = "tfsmooth"
author = "tfsmooth contributors"
copyright = "tfsmooth contributors"  # noqa: A001
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

# -- autodoc / napoleon -------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections as :ivar: fields, so they never clash with members autodoc documents.
napoleon_use_ivar = True
napoleon_include_init_with_doc = False
nitpicky = False

# -- pages ----------------------------------------------------------------------------------------
master_doc = "index"
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "benchmarks_table.rst"]
templates_path: list[str] = []
html_theme = "alabaster"
html_static_path = ["_static"]
html_theme_options = {
    "description": "Smooth adversarial examples for TensorFlow 2 / Keras 3",
    "fixed_sidebar": True,
}
pygments_style = "sphinx"
