"""The naming scheme of hotpatch packages, as the README documents it."""

from __future__ import annotations

import pytest

from ksplice_pkg.package.naming import Flavour, PackagingError, plan, version_of
from tests.unit.package.conftest import RELEASE, manifest_for

KO = b"\x7fELF\x02\x01\x01" + b"\0" * 11 + b"\x3e\x00" + b"\0" * 44  # x86-64, little endian


def test_names_carry_release_and_id() -> None:
    p = plan(manifest_for("fix1", KO), KO, Flavour.DEB, "t")
    assert p.name == "ksplice-update-6.1.0-56-cloud-amd64-fix1"
    assert p.install_dir == "usr/lib/ksplice-pkg/updates/6.1.0-56-cloud-amd64/fix1"
    assert (p.arch.deb, p.arch.rpm) == ("amd64", "x86_64")


def test_version_is_the_creation_stamp_and_orders_updates() -> None:
    older = manifest_for("a", KO, created="2026-01-02T03:04:05Z")
    newer = manifest_for("b", KO, created="2026-01-10T00:00:00Z")
    assert version_of(older) == "20260102.030405"
    assert version_of(older) < version_of(newer)
    assert version_of(manifest_for("c", KO, created="")) == "0"


def test_cumulative_update_without_stamp_is_refused() -> None:
    with pytest.raises(PackagingError, match="created"):
        version_of(manifest_for("c", KO, created="", replace=True))


def test_debian_relations() -> None:
    m = manifest_for("b", KO, depends_on=["a"], created="2026-01-10T00:00:00Z")
    p = plan(m, KO, Flavour.DEB, "t")
    assert [r.deb() for r in p.depends] == [
        "ksplice-pkg-runtime (>= 0.1.0)",
        f"linux-image-{RELEASE}",
        f"ksplice-update-{RELEASE}-a",
    ]
    assert [r.deb() for r in p.provides] == [f"ksplice-hotpatch-{RELEASE} (= 20260110.000000)"]
    assert p.supersedes == ()


def test_cumulative_supersedes_older_stamps_only() -> None:
    m = manifest_for("c", KO, replace=True, created="2026-01-10T00:00:00Z")
    older = manifest_for("a", KO, created="2026-01-01T00:00:00Z")
    later = manifest_for("d", KO, created="2026-02-01T00:00:00Z")
    other_kernel = manifest_for("e", KO, kernel_release="6.1.0-57-cloud-amd64")
    p = plan(m, KO, Flavour.RPM, "t", (m, older, later, other_kernel))
    assert [r.rpm() for r in p.supersedes] == [f"ksplice-hotpatch-{RELEASE} < 20260110.000000"]
    assert [r.rpm() for r in p.obsoletes] == [f"ksplice-update-{RELEASE}-a < 20260110.000000"]


def test_rpm_kernel_dependency() -> None:
    debian = plan(manifest_for("a", KO), KO, Flavour.RPM, "t")
    assert debian.depends[1].rpm() == f"kernel-uname-r({RELEASE})"
    rhel = "5.14.0-362.8.1.el9_3.x86_64"
    p = plan(manifest_for("a", KO, kernel_release=rhel), KO, Flavour.RPM, "t")
    assert p.depends[1].rpm() == f"kernel-uname-r = {rhel}"
    assert p.name == f"ksplice-update-{rhel}-a"
    # Debian names are lower case without underscores.
    assert plan(manifest_for("a", KO, kernel_release=rhel), KO, Flavour.DEB, "t").name == (
        "ksplice-update-5.14.0-362.8.1.el9-3.x86-64-a"
    )


def test_not_an_elf_module() -> None:
    with pytest.raises(PackagingError, match="not an ELF"):
        plan(manifest_for("a", KO), b"junk" * 10, Flavour.DEB, "t")
