"""The publisher's OpenPGP key, through gpg: what signs a repository's index files (apt's
InRelease and Release.gpg, dnf's repomd.xml.asc) and the RPMs themselves (rpmsign), and the
public key that clients are given to check them."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.fsutil import atomic_write
from ksplice_pkg.run import run

# What names a key on gpg's command line and in rpmsign's `_gpg_name` macro: a fingerprint, a
# long or short key id, or an e-mail address; nothing rpm would expand (%) or split (space).
_KEY_RE = re.compile(r"[A-Za-z0-9@._+-]{1,200}")
_FINGERPRINT_RE = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
# The public key, next to the repository: binary for apt's `signed-by`, armored for dnf's
# `gpgkey=` and `rpm --import`.
PUBLIC_KEY = "signing-key.gpg"
PUBLIC_KEY_ARMORED = "signing-key.asc"


class SigningError(KspliceError):
    """No usable secret key, or gpg failed to sign."""


@dataclass(frozen=True)
class Signer:
    fingerprint: str
    homedir: Path | None  # None: gpg's default ($GNUPGHOME, else ~/.gnupg)

    @classmethod
    def find(cls, key: str, homedir: Path | None) -> Signer:
        """The secret key `key` names, by its fingerprint: the one key every signature of a
        publication is made with, even when `key` is an address several keys share."""
        if not _KEY_RE.fullmatch(key):
            raise SigningError(
                f"{key!r} does not name an OpenPGP key (a fingerprint, key id or email)"
            )
        probe = cls("", homedir)
        listing = run(
            [*probe.gpg(), "--with-colons", "--list-secret-keys", key], check=False
        ).stdout.decode(errors="replace")
        # The primary key's fingerprint is the first fpr record after its sec record.
        fingerprints = [
            line.split(":")[9]
            for line, before in zip(listing.splitlines()[1:], listing.splitlines(), strict=False)
            if line.startswith("fpr:") and before.startswith("sec:")
        ]
        if len(fingerprints) != 1 or not _FINGERPRINT_RE.fullmatch(fingerprints[0]):
            where = homedir or os.environ.get("GNUPGHOME") or "~/.gnupg"
            found = "no secret key" if not fingerprints else f"{len(fingerprints)} secret keys"
            raise SigningError(
                f"{found} for {key!r} in {where}",
                hint="give --gpg-key a fingerprint of a secret key in --gpg-homedir "
                "(`gpg --list-secret-keys`)",
            )
        return cls(fingerprints[0], homedir)

    def gpg(self) -> list[str]:
        gpg = shutil.which("gpg")
        if gpg is None:
            raise SigningError("gpg is not installed", hint="apt-get install gpg")
        homedir = self.homedir or os.environ.get("GNUPGHOME")
        return [gpg, "--batch", "--yes", *(["--homedir", str(homedir)] if homedir else [])]

    def _signing(self) -> list[str]:
        return [*self.gpg(), "--local-user", self.fingerprint, "--digest-algo", "SHA512"]

    def clearsign(self, text: Path, out: Path) -> None:
        run([*self._signing(), "--clearsign", "--output", out, text])

    def detach_sign(self, data: Path, out: Path) -> None:
        run([*self._signing(), "--armor", "--detach-sign", "--output", out, data])

    def sign_rpm(self, rpm: Path) -> None:
        """Add the key's signature to rpm in place; one already there is left alone."""
        defines = {
            # Debian's rpm names gpg2, which Debian does not install under that name.
            "__gpg": self.gpg()[0],
            "_gpg_name": self.fingerprint,
            **({"_gpg_path": str(self.homedir)} if self.homedir else {}),
        }
        argv: list[str] = ["rpmsign", "--addsign"]
        for name, value in defines.items():
            argv += ["--define", f"{name} {value}"]
        homedir = self.homedir or os.environ.get("GNUPGHOME")
        run([*argv, rpm], env={"GNUPGHOME": str(homedir)} if homedir else None)

    def export(self, directory: Path) -> list[Path]:
        """The public key into directory, in both forms; rewritten only when it changed."""
        written = []
        for name, armor in ((PUBLIC_KEY, []), (PUBLIC_KEY_ARMORED, ["--armor"])):
            data = run([*self.gpg(), *armor, "--export", self.fingerprint]).stdout
            path = directory / name
            if not path.is_file() or path.read_bytes() != data:
                atomic_write(path, data)
            written.append(path)
        return written

    def signs(self, signature: Path, data: Path | None = None) -> bool:
        """Whether `signature` (detached from data, or inline when data is None) is a good
        signature by this key (or one of its subkeys)."""
        if not signature.is_file():
            return False
        argv: list[str | Path] = [*self.gpg(), "--status-fd", "1", "--verify", signature]
        if data is not None:
            argv.append(data)
        status = run(argv, check=False).stdout.decode(errors="replace")
        return any(
            line.startswith("[GNUPG:] VALIDSIG ") and self.fingerprint in line.split()
            for line in status.splitlines()
        )
