"""Stop a training run cleanly on SIGTERM or SIGINT: finish the step, write a checkpoint, exit 0.

Schedulers (Slurm, Kubernetes, systemd) send SIGTERM some time before they kill; Ctrl-C sends SIGINT.
The handler only records the signal. The loop looks at it at the next step boundary, where all ranks
agree on it (`DistContext.max_over_ranks`, one 4-byte all-reduce per step), saves and returns, so the
same command resumes exactly where the run stopped.

A second Ctrl-C in a single-process run stops at once, without a checkpoint. Under torchrun a second
signal is expected rather than impatient (on Ctrl-C every worker gets SIGINT from the terminal and again
from torchrun), so there it is recorded like the first; torchrun's own --shutdown_timeout (30 s by
default) is the hard stop there.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Context manager: while active, SIGINT/SIGTERM set `received` (the signal number) instead of killing."""

    def __init__(self, repeated_interrupt_aborts: bool):
        self.received = 0  # signal number; 0 = none yet
        self._repeated_interrupt_aborts = repeated_interrupt_aborts
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        # Python installs signal handlers from the main thread only; elsewhere (a trainer driven from a
        # worker thread) the process keeps its default behaviour.
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            # None: the previous handler was not installed from Python; the default is the closest.
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.received and signum == signal.SIGINT and self._repeated_interrupt_aborts:
            raise KeyboardInterrupt
        self.received = self.received or signum


def ignore_terminal_interrupt(worker_id: int) -> None:
    """DataLoader worker_init_fn: Ctrl-C reaches the terminal's whole process group, workers included.

    A worker killed by it would make the main process fail before it reaches the step boundary where it
    saves; the main process shuts its workers down itself. (SIGTERM keeps its default in workers:
    DataLoader and multiprocessing stop stuck workers with it.)
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
