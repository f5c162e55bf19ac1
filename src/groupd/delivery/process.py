"""Webhook delivery in a process of its own, started and watched by each server
(decision 0076).

A delivery is an HTTP request made in Python: run on the server's threads, it takes the
API's core and GIL. So a server runs a watch thread instead, and the sending runs in a
child, ``groupd webhooks deliver --parent-pid``, which can use another core:

- the child is started once the database holds an enabled subscription, and started
  again (after a growing pause) if it exits; until there is one, the watch thread relays
  the outbox itself, which with no subscriber only removes events nobody wants;
- the child gets the server's settings, whether they came from the environment or from
  the code that built the app;
- the child leaves when its server is gone, even one killed with SIGKILL: it checks
  its parent between rounds (``parent_is_gone``).

Deliveries stay at least once and in order (decision 0061): the child is one more
delivery process among any others, sharing the same leases.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

from groupd.delivery.dispatcher import Dispatcher
from groupd.services.webhooks import subscriptions
from groupd.settings import Settings
from groupd.store.db import Database

log = logging.getLogger("groupd.webhooks")
RESTART_PAUSE_SECONDS = (1.0, 60.0)  # first and longest pause before a restart
STOP_TIMEOUT_SECONDS = 15.0


def settings_environment(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("GROUPD_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        env[f"GROUPD_{name.upper()}"] = text
    return env


def parent_is_gone(parent_pid: int) -> bool:
    """Whether the process that started this one has ended (this one was adopted)."""
    return os.getppid() != parent_pid


class DeliveryProcess:
    """A server's watch thread over its delivery child; ``start`` and ``stop`` like the
    delivery threads it stands in for."""

    def __init__(self, db: Database, settings: Settings, dispatcher: Dispatcher) -> None:
        self.db = db
        self.settings = settings
        self.dispatcher = dispatcher
        self.child: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pause = RESTART_PAUSE_SECONDS[0]
        self._lock = threading.Lock()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="groupd-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            child, self.child = self.child, None
        if child is not None and child.poll() is None:
            child.terminate()  # it finishes the batch in flight and records it
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _watch(self) -> None:
        while not self._stop.is_set():
            pause = self.settings.webhook_poll_seconds
            try:
                pause = self._look_after_child() or pause
            except Exception:  # a lost database: log it, look again
                log.exception("webhook delivery watch failed")
            self._stop.wait(pause)

    def _look_after_child(self) -> float | None:
        """One look; a longer pause than usual when the child must not start yet."""
        child = self.child
        if child is not None:
            code = child.poll()
            if code is None:
                self._pause = RESTART_PAUSE_SECONDS[0]
                return max(self.settings.webhook_poll_seconds, 1.0)
            log.warning("webhook delivery process %s exited with %s", child.pid, code)
            with self._lock:
                self.child = None
            pause, self._pause = self._pause, min(self._pause * 2, RESTART_PAUSE_SECONDS[1])
            return pause
        with self.db.unit_of_work(write=False) as uow:
            wanted = subscriptions.any_enabled(uow)
        if not wanted:
            self.dispatcher.relay_once()
            return None
        with self._lock:
            if not self._stop.is_set():
                self.child = self._spawn()
        return None

    def _spawn(self) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "groupd", "webhooks", "deliver"]
        argv += ["--parent-pid", str(os.getpid())]
        child = subprocess.Popen(
            argv, env=settings_environment(self.settings), stdin=subprocess.DEVNULL
        )
        log.info("webhook delivery process %s started", child.pid)
        return child
