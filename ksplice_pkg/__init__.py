"""ksplice-pkg: rebootless kernel updates, built the ksplice way and shipped as distro packages.

The pipeline, one module or subpackage per stage:
distro (fetch the target kernel) -> kbuild (prepare and build) -> vm (prove it on the real kernel).
"""

__version__ = "0.1.0"
