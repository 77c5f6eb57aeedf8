"""Signing a livepatch module as the kernel's scripts/sign-file does, for kernels that load only
signed modules (module.sig_enforce=1, or lockdown under Secure Boot).

A signed module is the module, then a detached PKCS#7 (CMS) signature of it in DER, then a
struct module_signature saying how long that is, then the magic string
(include/linux/module_signature.h, kernel/module/signing.c). The signature has no signed
attributes: the kernel rejects module signatures that carry any (pkcs7_verify,
VERIFYING_MODULE_SIGNATURE), and sign-file makes none by default. The certificate is not
embedded: the kernel looks the signer up by issuer and serial among the keys it trusts (built in,
or enrolled in MOK), which is also what `modinfo` shows as signer and sig_key.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.run import run

MAGIC = b"~Module signature appended~\n"
PKEY_ID_PKCS7 = 2
# algo, hash, id_type, signer_len, key_id_len, 3 bytes of padding, sig_len (big-endian)
_MODULE_SIGNATURE = struct.Struct(">BBBBB3xI")


class SigningError(KspliceError):
    """The module could not be signed with the key and certificate given."""


def is_signed(module: bytes) -> bool:
    return module.endswith(MAGIC)


def sign_module(module: bytes, key: Path, cert: Path, digest: str = "sha256") -> bytes:
    """`module` with a signature by `key` (PEM private key) for `cert` (PEM certificate)."""
    if is_signed(module):
        raise SigningError("the module is signed already", hint="sign the unsigned module")
    with tempfile.TemporaryDirectory(prefix="ksplice-sign-") as tmp:
        unsigned = Path(tmp) / "module.ko"
        unsigned.write_bytes(module)
        signature = Path(tmp) / "module.p7s"
        # openssl's exit status and message say which of key or certificate is wrong.
        run(
            ["openssl", "cms", "-sign", "-binary", "-noattr", "-nocerts", "-nosmimecap",
             "-md", digest, "-signer", cert, "-inkey", key, "-outform", "DER",
             "-in", unsigned, "-out", signature]
        )  # fmt: skip
        pkcs7 = signature.read_bytes()
    trailer = _MODULE_SIGNATURE.pack(0, 0, PKEY_ID_PKCS7, 0, 0, len(pkcs7))
    return module + pkcs7 + trailer + MAGIC


def signature_of(module: bytes) -> tuple[bytes, bytes]:
    """(the unsigned module, its PKCS#7 signature in DER) of a signed module."""
    if not is_signed(module):
        raise SigningError("the module carries no appended signature")
    end = len(module) - len(MAGIC)
    fields = _MODULE_SIGNATURE.unpack_from(module, end - _MODULE_SIGNATURE.size)
    length = fields[-1]
    start = end - _MODULE_SIGNATURE.size - length
    if fields[2] != PKEY_ID_PKCS7 or start < 0:
        raise SigningError("the module's appended signature is not a PKCS#7 one")
    return module[:start], module[start : end - _MODULE_SIGNATURE.size]
