"""Model-based rerankers: reward models, cross-encoders, LLM judges, embedding similarity, ensembles.

Each module registers one reranker through its own entry point. ``common`` contains the
shared params (scores of empty and truncated responses, the score cache) and the base
class that applies them.
"""
