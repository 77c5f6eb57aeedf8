"""What the machine has: applied and installed updates, their state, the effective version."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ksplice_pkg.boundary import shown
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.manifest import CveStatus, Manifest
from ksplice_pkg.runtime import guard, kernel, sysfs
from ksplice_pkg.runtime.bundle import Bundle, check_kernel, installed_manifest
from ksplice_pkg.runtime.errors import WrongKernelError
from ksplice_pkg.runtime.reapply import last_report
from ksplice_pkg.runtime.state import State
from ksplice_pkg.runtime.store import Store
from ksplice_pkg.runtime.stream import StreamPackage, describe, installed_stream


@dataclass
class UpdateState:
    id: str
    state: str
    reason: str = ""
    description: str = ""
    patched: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    replace: bool = False
    cves: list[str] = field(default_factory=list)
    installed: bool = False
    applied_at: float | None = None
    source: str = ""
    # build --from: the source upload it brings (manifest.Upload.to_dict()), else None.
    upload: dict[str, Any] | None = None


@dataclass
class View:
    kernel_release: str
    build_id: str | None
    effective_version: str
    boot_stable: bool
    updates: list[UpdateState]
    stream: StreamPackage

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def state_of(m: Manifest, state: str, **kw: Any) -> UpdateState:
    """What view shows of an update, from its manifest."""
    return UpdateState(
        id=m.id,
        state=state,
        description=m.description,
        patched=[f"{p.object}:{p.name}" + (f",{p.sympos}" if p.sympos else "") for p in m.patched],
        depends_on=list(m.depends_on),
        replace=m.replace,
        cves=list(m.cves),
        upload=m.upload.to_dict() if m.upload is not None else None,
        **kw,
    )


def collect(store: Store) -> View:
    release = kernel.release()
    records = store.applied_records()
    report = last_report(store)
    quarantined = store.quarantined()
    superseded = store.superseded()
    states: dict[str, UpdateState] = {}
    installed: dict[str, Manifest | KspliceError] = {}
    for update_id in store.installed_ids(release):
        try:
            installed[update_id] = installed_manifest(store, release, update_id)
        except KspliceError as e:
            installed[update_id] = e
    # Applied: what the kernel holds under a ksplice_ name, described by our record.
    for name in sysfs.patches():
        if not name.startswith("ksplice_"):
            continue
        update_id = name.removeprefix("ksplice_")
        live = State.IN_TRANSITION if sysfs.in_transition(name) else State.APPLIED
        known = records.get(update_id)
        manifest = known[0] if known else installed.get(update_id)
        applied_at = known[1].get("applied_at") if known else None
        source = str(known[1].get("source", "")) if known else "not applied by ksplice-pkg"
        if isinstance(manifest, Manifest):
            states[update_id] = state_of(
                manifest,
                live,
                installed=update_id in installed,
                applied_at=applied_at if isinstance(applied_at, float) else None,
                source=source,
            )
        else:
            states[update_id] = UpdateState(update_id, live, source=source)
    for update_id, found in installed.items():
        if update_id in states:
            continue
        if isinstance(found, KspliceError):
            states[update_id] = UpdateState(update_id, State.FAILED, found.message, installed=True)
            continue
        state: str = State.INSTALLED  # or what the last reapply reported, a string
        reason = ""
        if update_id in quarantined:
            state, reason = State.QUARANTINED, quarantined[update_id]
        elif update_id in superseded:
            state, reason = (
                State.SUPERSEDED,
                f"replaced by the cumulative update {superseded[update_id]}",
            )
        elif update_id in report and report[update_id].state in (
            State.FAILED,
            State.SKIPPED,
            State.SUPERSEDED,
        ):
            state, reason = report[update_id].state, report[update_id].reason
        states[update_id] = state_of(found, state, reason=reason, installed=True)
    applied = sorted(
        (s for s in states.values() if s.state == State.APPLIED and s.applied_at is not None),
        key=lambda s: s.applied_at or 0.0,
    )
    effective = f"{release}+{applied[-1].id}" if applied else release
    return View(
        kernel_release=release,
        build_id=kernel.build_id(),
        effective_version=effective,
        boot_stable=guard.boot_stable(store),
        updates=sorted(states.values(), key=lambda s: (s.applied_at is None, s.applied_at, s.id)),
        stream=installed_stream(release),
    )


def format_update(s: UpdateState) -> str:
    lines = [f"{s.id}: {s.state}" + (f" ({s.reason})" if s.reason else "")]
    if s.description:
        lines.append(f"  {s.description}")
    if s.patched:
        lines.append(f"  patches: {', '.join(s.patched)}")
    if s.depends_on:
        lines.append(f"  built on: {', '.join(s.depends_on)}")
    if s.replace:
        lines.append("  cumulative: replaces every earlier update")
    if s.cves:
        lines.append(f"  fixes: {', '.join(s.cves)}")
    if s.upload is not None:
        lines.extend(f"  {line}" for line in format_upload(s.upload))
    return shown("\n".join(lines))


# How many CVE ids of one status the update's lines name before "and N more": a stable update
# names a thousand; `view --cves` lists them all.
_NAMED_CVES = 10
# Status -> how the text view says it.
_STATUS_TEXT = {
    CveStatus.INCLUDED.value: "included",
    CveStatus.LEFT_OUT.value: "left out, a reboot is needed for them",
    CveStatus.UNKNOWN.value: "with the mapping unknown (the upload does not say which change "
    "fixes them)",
}


def _version(version: object) -> str:
    return str(version) if version else "(version unknown)"


def format_upload(upload: dict[str, Any]) -> list[str]:
    """The lines of an update's upload: the two source versions, the number of changelog
    entries between them, and the CVE ids they name by status."""
    count = len(upload["changelog"])
    lines = [
        f"upload: from the kernel source {_version(upload['from'])} "
        f"to {_version(upload['to'])}, {count} changelog "
        f"entr{'y' if count == 1 else 'ies'}"
    ]
    by_status: dict[str, list[str]] = {}
    for cve, status in sorted(upload["cves"].items()):
        by_status.setdefault(status, []).append(cve)
    for status, text in _STATUS_TEXT.items():
        cves = by_status.get(status, [])
        if not cves:
            continue
        named = ", ".join(cves[:_NAMED_CVES])
        more = f" and {len(cves) - _NAMED_CVES} more" if len(cves) > _NAMED_CVES else ""
        lines.append(f"{len(cves)} CVE{'' if len(cves) == 1 else 's'} {text}: {named}{more}")
    if not upload["cves"]:
        lines.append("CVEs: the upload's changelog names none")
    return lines


def format_view(view: View) -> str:
    build = f" (build-id {view.build_id})" if view.build_id else ""
    head = [
        f"kernel: {view.kernel_release}{build}",
        f"effective version: {view.effective_version}",
        describe(view.stream),
    ]
    body = [format_update(s) for s in view.updates] or ["no updates applied or installed"]
    return "\n".join([*map(shown, head), "", *body])


def live_cves(view: View) -> dict[str, Any]:
    """view --cves: the CVE ids the kernel has fixed live now, by applied update (an update in
    transition is not yet live everywhere, a superseded one no longer; a cumulative update's
    own list is what it fixes)."""
    live = [s for s in view.updates if s.state == State.APPLIED]
    status: dict[str, str] = {}
    updates: list[dict[str, Any]] = []
    for s in live:
        entry: dict[str, Any] = {"id": s.id, "cves": s.cves}
        named = dict.fromkeys(s.cves, CveStatus.INCLUDED.value)
        if s.upload is not None:
            entry["upload"] = {k: s.upload[k] for k in ("from", "to", "cves")}
            named = {**s.upload["cves"], **named}
        updates.append(entry)
        for cve, this in named.items():
            status[cve] = _better(status.get(cve), this)
    return {
        "kernel_release": view.kernel_release,
        "effective_version": view.effective_version,
        "updates": updates,
        "cves": sorted(cve for cve, this in status.items() if this == CveStatus.INCLUDED.value),
        "status": dict(sorted(status.items())),
    }


_RANK = [CveStatus.LEFT_OUT.value, CveStatus.UNKNOWN.value, CveStatus.INCLUDED.value]


def _better(old: str | None, new: str) -> str:
    """The status of a CVE two applied updates name: fixed by either is fixed; a fix left out
    by one may be in the other, whose mapping is unknown."""
    return new if old is None or _RANK.index(new) > _RANK.index(old) else old


def format_cves(cves: dict[str, Any]) -> str:
    head = [
        f"kernel: {cves['kernel_release']}",
        f"effective version: {cves['effective_version']}",
    ]
    body: list[str] = []
    for u in cves["updates"]:
        upload = u.get("upload")
        if upload is None:
            body.append(f"{u['id']}: {', '.join(u['cves']) or 'no CVE named'}")
            continue
        body.append(
            f"{u['id']}: the kernel source {_version(upload['from'])} -> "
            f"{_version(upload['to'])}, {len(upload['cves'])} CVEs named"
        )
        named = {**upload["cves"], **dict.fromkeys(u["cves"], CveStatus.INCLUDED.value)}
        body.extend(f"  {cve}  {_STATUS_LINE[status]}" for cve, status in sorted(named.items()))
    if not body:
        body = ["no updates applied: no CVE fixed live"]
    return shown("\n".join([*head, "", *body]))


_STATUS_LINE = {
    CveStatus.INCLUDED.value: "included: fixed live",
    CveStatus.LEFT_OUT.value: "left out: a reboot is needed",
    CveStatus.UNKNOWN.value: "mapping unknown",
}


def describe_bundle(bundle: Bundle) -> dict[str, Any]:
    """view --file: what an update is, and whether this kernel could take it."""
    m = bundle.manifest
    info: dict[str, Any] = asdict(state_of(m, "not applied"))
    info.update(
        kernel_release=m.kernel_release,
        target_build_id=m.target_build_id,
        module=m.module,
        module_sha256=m.module_sha256,
        verification=m.verification,
        for_this_kernel=_for_this_kernel(m),
    )
    return info


def _for_this_kernel(m: Manifest) -> bool:
    try:
        check_kernel(m, kernel.release(), kernel.build_id())
    except WrongKernelError:
        return False
    return True
