"""docgate indexer: documentation sources → immutable, searchable index generations."""

__version__ = "0.1.0"
