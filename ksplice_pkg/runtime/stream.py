"""The stream of the running kernel: the one package per kernel release whose versions are its
cumulative updates (`ksplice-pkg package --stream`), which `apt upgrade`, `dnf upgrade` and
unattended-upgrades follow. `view` and the boot unit say whether it is installed, and what its
name would be, so that an administrator learns what to install without reading the packager's
documentation.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from ksplice_pkg.run import run

STREAM_PREFIX = "ksplice-updates-"


def release_part(release: str, debian: bool) -> str:
    """The release as package names hold it: Debian's are lower case without underscores (a
    RHEL release has both); RPM names keep it as it is."""
    return release.lower().replace("_", "-") if debian else release


def stream_names(release: str) -> tuple[str, str]:
    """The stream package's name for dpkg and for rpm."""
    return (
        STREAM_PREFIX + release_part(release, debian=True),
        STREAM_PREFIX + release_part(release, debian=False),
    )


@dataclass(frozen=True)
class StreamPackage:
    name: str  # what is installed, or what would be (the package manager's name first)
    version: str | None  # None: not installed


def installed_stream(release: str) -> StreamPackage:
    """The running kernel's stream package as dpkg or rpm knows it."""
    deb, rpm = stream_names(release)
    if shutil.which("dpkg-query"):
        query = run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", deb], check=False)
        status, _, version = query.stdout.decode(errors="replace").partition(" ")
        if query.returncode == 0 and status == "installed":
            return StreamPackage(deb, version)
    if shutil.which("rpm"):
        query = run(["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", rpm], check=False)
        if query.returncode == 0:
            return StreamPackage(rpm, query.stdout.decode(errors="replace"))
    return StreamPackage(deb if shutil.which("dpkg-query") else rpm, None)


def describe(stream: StreamPackage) -> str:
    if stream.version is not None:
        return f"stream: {stream.name} {stream.version}"
    return (
        f"stream: none installed for this kernel; its cumulative updates would come with "
        f"{stream.name} (apt install / dnf install {stream.name})"
    )
