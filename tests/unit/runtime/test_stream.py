"""The running kernel's stream package, as view and the boot unit name it: asked of the real
dpkg and rpm databases of this machine, where no hotpatch stream is installed."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from ksplice_pkg.cli import main
from ksplice_pkg.package.naming import Flavour, stream_name
from ksplice_pkg.runtime.store import Store
from ksplice_pkg.runtime.stream import describe, installed_stream, stream_names

RELEASES = ["6.1.0-56-cloud-amd64", "5.14.0-427.13.1.el9_4.x86_64"]


@pytest.mark.parametrize("release", RELEASES)
def test_the_runtime_names_the_stream_as_the_packager_does(release: str) -> None:
    assert stream_names(release) == (
        stream_name(release, Flavour.DEB),
        stream_name(release, Flavour.RPM),
    )


def test_a_kernel_without_its_stream_is_said_so_with_the_name_to_install() -> None:
    if not shutil.which("dpkg-query"):
        pytest.skip("no dpkg here")
    release = "6.1.0-9999-notinstalled-amd64"
    stream = installed_stream(release)
    assert stream.version is None
    assert stream.name == f"ksplice-updates-{release}"
    assert "none installed" in describe(stream) and stream.name in describe(stream)


def test_view_and_reapply_print_the_stream_line(store: Store) -> None:
    view = CliRunner().invoke(main, ["view"])
    assert view.exit_code == 0, view.output
    assert "stream: " in view.output and "ksplice-updates-" in view.output
    reapply = CliRunner().invoke(main, ["reapply"])
    assert reapply.exit_code == 0, reapply.output
    assert "stream: " in reapply.output
