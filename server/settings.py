"""The server's view of the one settings tree (`indexer.settings`): re-exported under server names.

Both programs read one file, so the tree — the server's tables included — is defined where the
indexer can import it (the indexer never imports the server). `ServerSettings` is that tree.
"""

from __future__ import annotations

from indexer.settings import (
    AnswerSettings,
    AuditSettings,
    AuthSettings,
    CacheSettings,
    CollectionSettings,
    GroundingSettings,
    ProviderSettings,
    RerankSettings,
    RetrievalSettings,
    ServeSettings,
    Settings,
)
from indexer.settings_check import SettingsError

ServerSettings = Settings

__all__ = [
    "AnswerSettings",
    "AuditSettings",
    "AuthSettings",
    "CacheSettings",
    "CollectionSettings",
    "GroundingSettings",
    "ProviderSettings",
    "RerankSettings",
    "RetrievalSettings",
    "ServeSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
]
