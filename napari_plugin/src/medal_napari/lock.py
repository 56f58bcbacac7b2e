"""One writer per case: a lock file next to the annotations, naming who holds it.

The lock is created with ``O_CREAT | O_EXCL`` (atomic on local and NFSv3+ file systems) and holds
the holder's user, host, process id, a per-session token and the time. A lock left by a process
that no longer runs on this host is stale and taken over; a lock from another host is never taken
over automatically (its process cannot be checked from here): the message says whom to ask.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CaseLock", "LockHeld"]


class LockHeld(RuntimeError):
    """Another session holds the lock; ``holder`` says who."""

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = path, holder
        since = holder.get("since", "?")
        super().__init__(f"{path.name[:-len('.lock')]} is being annotated by {holder.get('user', '?')} on "
                         f"{holder.get('host', '?')} (pid {holder.get('pid', '?')}, since {since}); "
                         f"open another case, or remove {path} if that session is gone")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class CaseLock:
    path: Path
    user: str
    token: str

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"user": "unknown (unreadable lock file)", "host": "?", "pid": "?"}

    def held_by_me(self) -> bool:
        holder = self._read()
        return bool(holder) and holder.get("token") == self.token

    def acquire(self) -> None:
        """Take the lock, or raise :class:`LockHeld` naming its holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"user": self.user, "host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
              "since": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None:
                    continue  # released meanwhile
                if holder.get("token") == self.token:
                    return
                stale = (holder.get("host") == me["host"] and isinstance(holder.get("pid"), int)
                         and not _pid_alive(holder["pid"]))
                if not stale:
                    raise LockHeld(self.path, holder)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(me, fh)
                fh.flush()
                os.fsync(fh.fileno())
            return
        raise LockHeld(self.path, self._read() or {})

    def release(self) -> None:
        if self.held_by_me():
            self.path.unlink(missing_ok=True)
