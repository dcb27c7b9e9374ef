"""Server settings: the indexer's (data dir, model, vectors) plus retrieval, serving, auth, audit.

Same sources and precedence as the indexer: defaults < TOML (`--config`/`DOCGATE_CONFIG`) < env.
`DOCGATE_TENANTS_FILE` and `DOCGATE_AUDIT_LOG` are accepted as short forms of
`DOCGATE_AUTH__TENANTS_FILE` and `DOCGATE_AUDIT__PATH`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from indexer.settings import IndexerSettings


class RetrievalSettings(BaseModel):
    rrf_k: int = Field(default=60, ge=1, le=1000, description="Reciprocal rank fusion constant.")
    bm25_weight: float = Field(default=1.0, ge=0.0, le=10.0, description="RRF weight of BM25 lists.")
    dense_weight: float = Field(default=1.0, ge=0.0, le=10.0, description="RRF weight of dense lists.")
    rewrite_weight: float = Field(
        default=0.5, ge=0.0, le=10.0, description="Multiplier on lists retrieved for rewritten phrasings."
    )
    rewrites: bool = Field(default=True, description="Add offline rewritten phrasings of each query.")
    dense_rewrites: bool = Field(
        default=False, description="Also embed the rewritten phrasings for dense search."
    )
    candidates: int = Field(
        default=50, ge=5, le=1000, description="Top-N taken from each retriever per phrasing."
    )
    max_chunks_per_document: int = Field(
        default=2, ge=1, le=50, description="Diversity: cap per page in one result list."
    )
    snippet_chars: int = Field(default=240, ge=40, le=2000)


class ServeSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=1, le=65535)
    path: str = "/mcp"
    allowed_origins: list[str] = Field(
        default_factory=list, description="Extra Origin values accepted over HTTP."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Extra Host values accepted over HTTP."
    )
    reload_interval_s: float = Field(
        default=1.0, ge=0.05, le=3600, description="How often to look for new generations."
    )
    tenant: str = Field(default="default", description="Tenant of the stdio transport (the local operator).")


class AuthSettings(BaseModel):
    tenants_file: Path | None = None


class AuditSettings(BaseModel):
    path: Path | None = Field(
        default=None, description="Audit log file; default <data_dir>/audit/audit.jsonl."
    )


class AnswerSettings(BaseModel):
    backend: Literal["extractive", "openai", "anthropic", "sampling"] = "extractive"


class ServerSettings(IndexerSettings):
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)

    @model_validator(mode="before")
    @classmethod
    def _short_env_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            tenants = os.environ.get("DOCGATE_TENANTS_FILE")
            if tenants:
                data.setdefault("auth", {})
                if isinstance(data["auth"], dict):
                    data["auth"]["tenants_file"] = tenants
            audit = os.environ.get("DOCGATE_AUDIT_LOG")
            if audit:
                data.setdefault("audit", {})
                if isinstance(data["audit"], dict):
                    data["audit"]["path"] = audit
        return data

    @property
    def audit_path(self) -> Path:
        return self.audit.path or self.data_dir / "audit" / "audit.jsonl"
