"""The state table: incident records and locks, the event ledger, windows and audit (see store.py)."""
