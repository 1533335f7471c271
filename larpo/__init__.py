"""larpo: LLM alignment as retriever optimisation.

The policy LLM is a retriever (prompt = query, response = passage), the reward model
is a reranker, and alignment is retriever optimisation over ranked candidate lists.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("larpo")

from larpo import losses  # noqa: E402  (needs hookimpl defined first for plugins importing larpo)

__all__ = ["__version__", "hookimpl", "losses"]
