"""Log a notice once per process.

Some conditions (a capped FFT grid, a fallback to the exact sum) are met on every
iteration once they occur; :func:`log_once` reports each of them the first time only.
A notice is identified by its logger and its message template, not by the values
formatted into it. The record of what was logged is the set ``_logged`` (tests
reset it with ``monkeypatch.setattr(turbotsne._logging, "_logged", set())``).
"""
from __future__ import annotations

_logged = set()


def log_once(logger, level, msg, *args):
    """``logger.log(level, msg, *args)`` the first time this ``(logger, msg)`` is met in
    the process; later calls do nothing. Returns whether it logged."""
    key = (logger.name, msg)
    if key in _logged:
        return False
    _logged.add(key)
    logger.log(level, msg, *args)
    return True
