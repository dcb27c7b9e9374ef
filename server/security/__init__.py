"""Security: argument validation, injection screening, tenants and keys, rate limits, the audit log."""
