"""Signed livepatch modules, and a kernel that takes only signed ones: the real Debian kernel
booted with module.sig_enforce=1 in the Debian userland.

Debian's kernel trusts Debian's key (and, under shim, the machine owner's keys in MOK, which a
qemu boot without UEFI does not have): an unsigned update and one signed by a key of our own are
both refused, and `apply` says so with the "load refused" status, names signing and MOK, and
leaves nothing loaded. The signed module's signature is the kernel's format: openssl verifies
its PKCS#7 against the certificate, and the guest's modinfo names the signer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.runtime.errors import LoadError
from ksplice_pkg.update.sign import sign_module
from tests.lab.runtime_guest import make_update, output, rewritten, status, tar_dir
from tests.lab.test_runtime import A_PATCH, boot
from tests.unit.update.test_sign import verify_with_openssl

ID = "sga"
SIGNER = "ksplice-pkg lab module signing"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed")

SCRIPT = """
install_tool
tr ' ' '\\n' < /proc/cmdline | grep sig_enforce > "$OUT/cmdline"
rc unsigned ksplice-pkg apply ./unsigned.tar.gz
rc signed ksplice-pkg apply ./signed.tar.gz
ls /sys/kernel/livepatch > "$OUT/live"
lsmod | grep ksplice > "$OUT/lsmod"
mkdir x && tar -xzf signed.tar.gz -C x
rc modinfo modinfo x/ksplice-{id}/ksplice_{id}.ko
"""


def test_only_trusted_signed_modules_load(
    artifacts: KernelArtifacts, cache: Path, kallsyms: Path, tmp_path: Path
) -> None:
    update = make_update(artifacts, kallsyms, A_PATCH, tmp_path / "update", ID)
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-new", "-x509", "-newkey", "rsa:3072", "-nodes", "-days", "30",
         "-subj", f"/CN={SIGNER}", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    signed = sign_module(update.ko.read_bytes(), key, cert)
    directory = rewritten(
        update, tmp_path / "signed", module_sha256=hashlib.sha256(signed).hexdigest()
    )
    (directory / update.ko.name).write_bytes(signed)
    assert (
        json.loads((directory / "manifest.json").read_text())["module_sha256"]
        != (update.manifest["module_sha256"])
    )
    # The signature is the kernel's PKCS#7 over the unsigned module, by this certificate.
    verify_with_openssl(signed, cert, tmp_path)
    files = {
        "unsigned.tar.gz": update.tarball,
        "signed.tar.gz": tar_dir(directory, tmp_path / "signed.tar.gz"),
    }

    out = boot(artifacts, cache, SCRIPT.format(id=ID), files, append="module.sig_enforce=1")
    assert out["cmdline"].decode().split() == ["module.sig_enforce=1"]
    for name in ("unsigned", "signed"):
        said = output(out, name)
        print(f"{name}: exit {status(out, name)}: {said.strip()}")
        assert status(out, name) == LoadError.exit_code, said
        assert "mokutil --import" in said and "--sign-key" in said, said
        assert "nothing was loaded" in said, said
    # EKEYREJECTED both times; the kernel's log (in apply's message) says which refusal.
    assert "Loading of unsigned module is rejected" in output(out, "unsigned")
    assert "Loading of module with unavailable key is rejected" in output(out, "signed")
    assert out["live"].decode().split() == []
    assert out["lsmod"].decode() == ""
    assert status(out, "modinfo") == 0, output(out, "modinfo")
    assert f"signer:         {SIGNER}" in output(out, "modinfo"), output(out, "modinfo")
