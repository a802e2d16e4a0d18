"""The powertools Logger and Metrics shared by the handler and the domain code (one per container)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

SERVICE = "guardrail-responder"
NAMESPACE = "GuardrailResponder"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
