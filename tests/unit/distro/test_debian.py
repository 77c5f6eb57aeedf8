from __future__ import annotations

import pytest

from ksplice_pkg.distro.debian import _RELEASE_RE


@pytest.mark.parametrize(
    ("release", "abi", "flavour"),
    [
        ("6.1.0-56-cloud-amd64", "6.1.0-56", "cloud-amd64"),
        ("6.1.0-56-amd64", "6.1.0-56", "amd64"),
        ("6.12.115+deb12-cloud-amd64", "6.12.115+deb12", "cloud-amd64"),
    ],
)
def test_release_parts(release: str, abi: str, flavour: str) -> None:
    m = _RELEASE_RE.match(release)
    assert m is not None
    assert (m["abi"], m["flavour"]) == (abi, flavour)


@pytest.mark.parametrize("bad", ["6.1.192", "linux-image-6.1.0-56-amd64", "../etc", ""])
def test_not_a_release(bad: str) -> None:
    assert _RELEASE_RE.match(bad) is None
