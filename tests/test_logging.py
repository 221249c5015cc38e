"""The log-once helper (turbotsne._logging)."""
import logging

from turbotsne import _logging


def test_log_once_logs_each_template_once(monkeypatch, caplog):
    monkeypatch.setattr(_logging, "_logged", set())
    log = logging.getLogger("turbotsne.test_logging")
    with caplog.at_level(logging.INFO, logger=log.name):
        assert _logging.log_once(log, logging.WARNING, "capped at %d boxes", 3)
        assert not _logging.log_once(log, logging.WARNING, "capped at %d boxes", 4)  # same template
        assert _logging.log_once(log, logging.INFO, "another notice")
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == log.name]
    assert records == [(logging.WARNING, "capped at 3 boxes"), (logging.INFO, "another notice")]
