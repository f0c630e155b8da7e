"""The render lock beside an output: exclusive, and its file is gone once the render is over."""

from __future__ import annotations

import os
import threading

import pytest

from avatarrender.errors import RenderLockedError
from avatarrender.render import _lock


def test_lock_file_is_removed_and_a_waiter_never_shares_the_lock(tmp_path):
    out = tmp_path / "out"
    lock_file = tmp_path / ".out.lock"
    first = _lock(out, wait=False)
    assert lock_file.exists()
    with pytest.raises(RenderLockedError, match="another render"):
        _lock(out, wait=False)
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(_lock(out, wait=True)))
    waiter.start()  # blocks on the file the first holder is about to remove
    waiter.join(0.5)
    assert waiter.is_alive() and not got
    first.release()
    waiter.join(30)
    assert got, "the waiter did not get the lock"
    # the waiter re-took the lock on a new file at the path, so a newcomer is refused, not let in
    assert lock_file.exists()
    with pytest.raises(RenderLockedError):
        _lock(out, wait=False)
    got[0].release()
    assert not lock_file.exists()
    _lock(out, wait=False).release()
    assert not list(tmp_path.iterdir())


def test_a_busy_output_is_said_before_the_spec_is_checked(tmp_path):
    from avatarrender.render import check_not_busy

    from conftest import run_cli

    out = tmp_path / "out"
    check_not_busy(out)  # free: nothing said, nothing left
    assert not list(tmp_path.iterdir())
    held = _lock(out, wait=False)
    try:
        with pytest.raises(RenderLockedError, match="another render"):
            check_not_busy(out)
        # a segment file that does not even parse: the busy output is what is said, at once (the
        # second render checked the spec and analysed the speech first, seconds for nothing)
        bad = tmp_path / "seg.yaml"
        bad.write_text("scene: [\n")
        proc = run_cli("render", str(bad), "-o", str(out), "-q")
        assert proc.returncode == 3 and "another render" in proc.stderr, proc.stderr
        # who holds it, for `kill` or `ps` (the lock file holds the holder's pid)
        assert f"pid {os.getpid()}," in proc.stderr, proc.stderr
    finally:
        held.release()
