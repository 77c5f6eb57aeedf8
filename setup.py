"""Build entry of ksplice-pkg: rebootless kernel updates shipped as distro packages."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="ksplice-pkg",
    version="0.1.0",
    description="Build, ship and apply rebootless kernel updates (livepatch modules) as packages",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="GPL-2.0-only",
    python_requires=">=3.11",
    packages=find_packages(include=["ksplice_pkg", "ksplice_pkg.*"]),
    package_data={
        "ksplice_pkg": [
            "py.typed",
            "vm/guest/*",
            "examples/*",
            "package/scripts/*",
            "package/*.rpmlintrc",
            "include/ksplice/*",
        ]
    },
    install_requires=[
        "click>=8.1",
        "pyelftools>=0.29",
        "python-debian>=0.1.49",
        "rpmfile>=2.0",
    ],
    extras_require={
        "test": ["pytest>=7", "mypy>=1.8", "ruff>=0.4"],
    },
    entry_points={
        "console_scripts": [
            "ksplice-pkg=ksplice_pkg.cli:main",
            "ksplice-create=ksplice_pkg.cli:create_main",
            "ksplice-apply=ksplice_pkg.runtime.cli:apply_main",
            "ksplice-undo=ksplice_pkg.runtime.cli:undo_main",
            "ksplice-view=ksplice_pkg.runtime.cli:view_main",
        ],
    },
)
