"""gunicorn settings silver gives every WSGI app (`--config python:silver_gunicorn`): a hook that
says which request a worker was serving when it died without a word (a segfault, the kernel's
OOM killer), since a dead worker cannot log it itself.

Workers note the request they serve on a board of shared memory the master made before it
forked them; when the master reaps a worker whose note is still up, it logs it.
"""

import mmap
import time

from gunicorn import arbiter as _arbiter

_SLOTS, _SLOT = 256, 128
# Anonymous and shared: made in the master at start-up, inherited by every worker it forks.
_board = mmap.mmap(-1, _SLOTS * _SLOT)


def _offset(pid):
    return (pid % _SLOTS) * _SLOT


def mark(pid, method, path):
    """Worker `pid` now serves `method path`."""
    text = ("%d\t%f\t%s %s" % (pid, time.monotonic(), method, path)).encode()[: _SLOT - 1]
    offset = _offset(pid)
    _board[offset:offset + _SLOT] = text.ljust(_SLOT, b"\0")


def clear(pid):
    """Worker `pid` serves nothing (or has logged its own end)."""
    offset = _offset(pid)
    _board[offset:offset + 1] = b"\0"


def child_exit(server, worker):
    offset = _offset(worker.pid)
    note = _board[offset:offset + _SLOT].split(b"\0", 1)[0].decode(errors="replace")
    clear(worker.pid)
    fields = note.split("\t")
    if len(fields) != 3 or fields[0] != str(worker.pid):
        return  # it died between requests, or another worker's note shares the slot
    ran_ms = (time.monotonic() - float(fields[1])) * 1000
    server.log.warning("silver: worker %d died during %s after %.0f ms; replaced",
                       worker.pid, fields[2], ran_ms)


def pre_fork(server, worker):
    # Every object the preloaded app made moves out of the collector's reach (Instagram's
    # `gc.freeze`): a fresh worker's first collections then do not touch, and so copy, every
    # page the master shares with it. Workers replaced many times a second (the fail-safe
    # runtime ending wedged requests) each cost less CPU.
    import gc
    gc.freeze()


def _spawn_workers(self):
    """gunicorn's own, without its pause of up to 0.1 s after each worker it forks. That pause
    spreads workers out at start-up; when the fail-safe runtime replaces a wedged worker many
    times a second, it keeps the master asleep while the pool stays short of workers (30 a
    second is 1.5 s of pauses a second)."""
    for _ in range(self.num_workers - len(self.WORKERS)):
        self.spawn_worker()


_arbiter.Arbiter.spawn_workers = _spawn_workers
