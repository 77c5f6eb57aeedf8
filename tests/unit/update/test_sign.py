"""Module signatures as scripts/sign-file makes them, checked by openssl (the PKCS#7 verifies
against the certificate) and by kmod's modinfo (the signer it reads)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ksplice_pkg.errors import CommandError
from ksplice_pkg.update.sign import SigningError, is_signed, sign_module, signature_of

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed")

MODULE_C = 'char __module_license[] __attribute__((section(".modinfo"))) = "license=GPL";\n'


def verify_with_openssl(signed: bytes, cert: Path, work: Path) -> None:
    """openssl checks the appended PKCS#7 (work/module.p7s) against the unsigned module and the
    certificate, as the kernel does against its keyring."""
    content, pkcs7 = signature_of(signed)
    (work / "module.ko").write_bytes(content)
    (work / "module.p7s").write_bytes(pkcs7)
    subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", work / "module.p7s",
         "-content", work / "module.ko", "-certfile", cert, "-CAfile", cert,
         "-purpose", "any", "-out", "/dev/null"],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("key")
    key, cert = work / "signing_key.pem", work / "signing_cert.pem"
    subprocess.run(
        ["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-subj", "/CN=ksplice-pkg test signing key", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    work = tmp_path_factory.mktemp("ko")
    (work / "m.c").write_text(MODULE_C)
    subprocess.run(["gcc", "-c", "-o", work / "m.ko", work / "m.c"], check=True)
    return (work / "m.ko").read_bytes()


def test_signature_verifies_against_the_certificate(
    module: bytes, keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    key, cert = keypair
    signed = sign_module(module, key, cert)
    assert is_signed(signed) and signed.startswith(module)
    verify_with_openssl(signed, cert, tmp_path)
    # No signed attributes (the kernel refuses module signatures that have some).
    listing = subprocess.run(
        ["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", tmp_path / "module.p7s"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    attrs = listing.split("signedAttrs:", 1)[1].split()[0]
    assert attrs == "<ABSENT>", listing


@pytest.mark.skipif(shutil.which("modinfo") is None, reason="kmod's modinfo is needed")
def test_modinfo_names_the_signer(
    module: bytes, keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    ko = tmp_path / "signed.ko"
    ko.write_bytes(sign_module(module, *keypair))
    info = subprocess.run(["modinfo", ko], capture_output=True, text=True, check=True).stdout
    assert "signer:         ksplice-pkg test signing key" in info, info
    assert "sig_hashalgo:   sha256" in info, info


def test_refusals(module: bytes, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    key, cert = keypair
    with pytest.raises(SigningError, match="signed already"):
        sign_module(sign_module(module, key, cert), key, cert)
    with pytest.raises(SigningError, match="no appended signature"):
        signature_of(module)
    with pytest.raises(CommandError):
        sign_module(module, cert, cert)  # a certificate is no private key
