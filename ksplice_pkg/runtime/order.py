"""In which order updates load, and what a failure takes down with it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from graphlib import CycleError, TopologicalSorter

from ksplice_pkg.manifest import Manifest
from ksplice_pkg.runtime.errors import DependencyError


def dependency_order(
    manifests: Mapping[str, Manifest], key: Callable[[str], tuple[str | float, str]] | None = None
) -> list[str]:
    """Ids with every update after the ones it depends on; among updates free to go, the
    smallest key first (default: the oldest created, so a boot loads them in the order they
    were made).

    Dependencies outside `manifests` do not order anything: the caller decides what a missing
    dependency means (refusal at apply, a skip at reapply).
    """
    graph = TopologicalSorter(
        {i: [d for d in m.depends_on if d in manifests] for i, m in manifests.items()}
    )
    sort_key = key or (lambda i: (manifests[i].created, i))
    try:
        graph.prepare()
    except CycleError as e:
        raise DependencyError(f"updates depend on each other in a cycle: {e.args[1]}") from e
    order: list[str] = []
    while graph.is_active():
        ready = sorted(graph.get_ready(), key=sort_key)
        order.extend(ready)
        graph.done(*ready)
    return order


def dependents(manifests: Mapping[str, Manifest], update_id: str) -> list[str]:
    """The ids among manifests that depend on update_id directly."""
    return sorted(i for i, m in manifests.items() if update_id in m.depends_on)


def superseded_at_boot(manifests: Mapping[str, Manifest]) -> dict[str, str]:
    """id -> the cumulative update that replaces it: the newest replace update takes over
    every update created before it (except what it is itself built on)."""
    cumulative = [m for m in manifests.values() if m.replace]
    if not cumulative:
        return {}
    newest = max(cumulative, key=lambda m: (m.created, m.id))
    return {
        i: newest.id
        for i, m in manifests.items()
        if i != newest.id
        and i not in newest.depends_on
        and (m.created, m.id) < (newest.created, newest.id)
    }


def superseded_by(manifest: Manifest, installed: Collection[Manifest]) -> str | None:
    """The installed cumulative update that takes over from `manifest`, if any: by the rule
    the next boot follows (superseded_at_boot)."""
    return superseded_at_boot({**{m.id: m for m in installed}, manifest.id: manifest}).get(
        manifest.id
    )
