"""Retrieval: the published catalog and a tenant's scope, hybrid search, fusion, rewriting, cursors."""
