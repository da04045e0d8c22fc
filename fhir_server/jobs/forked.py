"""The loader's worker processes: forked, so they start with this process's modules (no
imports, ~1 ms), and ended by the kernel with it, however it ends.

A worker waits on a pipe or a semaphore shared with its parent. Had the parent been killed
(a SIGKILL runs no clean-up, and a SIGTERM's default action none either), nothing would ever
wake it: it would hold its pipes and its memory for good.
"""

import ctypes
import multiprocessing
import os
import signal
import sys
from multiprocessing.context import ForkContext

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: the signal a process gets when its parent ends


def fork_context() -> ForkContext:
    return multiprocessing.get_context("fork")


def die_with_parent(parent: int) -> None:
    """Called first in a worker forked by `parent`: the kernel sends it SIGKILL when the
    parent ends (Linux; elsewhere only the parent's own clean-up ends it). The parent is the
    thread that forked it: fork from the main thread."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it ended before the signal was asked for
        os._exit(1)
