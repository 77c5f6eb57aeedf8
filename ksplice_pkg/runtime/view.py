"""What the machine has: applied and installed updates, their state, the effective version."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ksplice_pkg.boundary import shown
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.manifest import Manifest
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


def _from_manifest(m: Manifest, state: str, **kw: Any) -> UpdateState:
    return UpdateState(
        id=m.id,
        state=state,
        description=m.description,
        patched=[f"{p.object}:{p.name}" + (f",{p.sympos}" if p.sympos else "") for p in m.patched],
        depends_on=list(m.depends_on),
        replace=m.replace,
        cves=list(m.cves),
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
            states[update_id] = _from_manifest(
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
        states[update_id] = _from_manifest(found, state, reason=reason, installed=True)
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
    return shown("\n".join(lines))


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
    return {
        "kernel_release": view.kernel_release,
        "effective_version": view.effective_version,
        "updates": [{"id": s.id, "cves": s.cves} for s in live],
        "cves": sorted({cve for s in live for cve in s.cves}),
    }


def format_cves(cves: dict[str, Any]) -> str:
    head = [
        f"kernel: {cves['kernel_release']}",
        f"effective version: {cves['effective_version']}",
    ]
    body = [f"{u['id']}: {', '.join(u['cves']) or 'no CVE named'}" for u in cves["updates"]] or [
        "no updates applied: no CVE fixed live"
    ]
    return shown("\n".join([*head, "", *body]))


def describe_bundle(bundle: Bundle) -> dict[str, Any]:
    """view --file: what an update is, and whether this kernel could take it."""
    m = bundle.manifest
    info: dict[str, Any] = asdict(_from_manifest(m, "not applied"))
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
