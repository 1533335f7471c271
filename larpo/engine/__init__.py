"""The LarPO engine: one module per phase of a round, driven by :mod:`larpo.engine.loop`."""

from larpo.engine.loop import Engine

__all__ = ["Engine"]
