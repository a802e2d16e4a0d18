"""The errors the package raises on purpose. Anything else escaping is a bug."""


class GuardrailError(Exception):
    """Base class: every error we raise deliberately derives from it."""


class InvalidEventError(GuardrailError, ValueError):
    """The input is not an event we can classify; the message says what is wrong with it."""


class ConfigurationError(GuardrailError):
    """The settings (environment variables) are missing or malformed; the message lists every problem."""


class CatalogueError(GuardrailError):
    """The rule catalogue is malformed: caught at import, before any event is handled."""


class RefusedEventError(GuardrailError):
    """A readable event that must not be acted on: forged, or from an account this responder does not serve."""
