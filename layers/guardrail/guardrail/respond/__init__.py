"""Respond: act on a verdict (contain, record, notify) and release after investigation."""
