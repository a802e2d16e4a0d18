"""Guardrail Responder: detect, contain and report AI agents that run destructive AWS API calls."""

__version__ = "0.1.0"
