"""Operate: the operator's tools (the guardrail CLI, replay)."""
