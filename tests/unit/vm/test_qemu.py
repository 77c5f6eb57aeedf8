"""What a boot left behind (vm.qemu): the console lines that mean the kernel crashed."""

from __future__ import annotations

from ksplice_pkg.vm.qemu import BootResult, console_story, console_tail


def test_crash_lines() -> None:
    console = "ok\n[ 1.0] BUG: kernel NULL pointer dereference, address: 0\nfine\n"
    assert BootResult(None, console).crash_lines() == [
        "[ 1.0] BUG: kernel NULL pointer dereference, address: 0"
    ]


def test_console_story_shows_where_a_stall_began() -> None:
    # A stalled guest repeats its lockup until the timeout: what it was doing before the first
    # lockup line is what the reader needs, and the tail alone has only the repetition.
    before = [f"[ {i}.0] step {i}" for i in range(30)]
    lockup = [f"[ {100 + i}.0] watchdog: BUG: soft lockup - CPU#0 stuck" for i in range(60)]
    story = console_story("\n".join(before + lockup), before=5, lines=10)
    assert "step 29" in story and "step 25" in story and "step 24" not in story
    assert story.count("soft lockup") == 5 + 10
    # No crash line, or one within the tail: the tail is the story.
    assert console_story("\n".join(before), lines=10) == console_tail("\n".join(before), 10)
