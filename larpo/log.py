"""Logging that writes through tqdm, so progress bars are not broken by log lines."""

from __future__ import annotations

import logging

from tqdm.auto import tqdm


class TqdmHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record))
        except Exception:
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Route the ``larpo`` loggers through tqdm with a timestamped format."""
    root = logging.getLogger("larpo")
    if any(isinstance(h, TqdmHandler) for h in root.handlers):
        return
    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    for noisy in ("transformers", "accelerate", "peft"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
