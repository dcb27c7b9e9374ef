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


class GroundingSettings(BaseModel):
    """Thresholds and weights of the grounding check (defaults explained per field)."""

    threshold: float = Field(
        default=0.5,
        description="Abstain when the length-weighted claim score is below this. 0.5 sits between a "
        "paraphrase of the source (≈0.6–0.9) and an on-topic but unsupported claim (≈0.2–0.4).",
    )
    # 0.45 from scripts/tune_grounding.py on the Django eval (59 cases, extractive backend). Every
    # threshold from 0.35 to 0.55 answers 0.91-0.96 of the answerable cases and abstains on
    # 0.93-1.00 of the unanswerable ones (±1 case between runs); below, questions naming an
    # identifier no source has (relevance capped at 0.30) get answered. 0.45 is the middle of that
    # plateau, chosen by its worst neighbour rather than by its own best score.
    relevance_threshold: float = Field(
        default=0.45,
        description="Abstain when question–evidence relevance is below this: sources about another "
        "topic score ≈0–0.3, sources that address the question ≈0.5–0.9.",
    )
    lexical_weight: float = Field(default=0.5, description="Weight of content-word overlap in support.")
    semantic_weight: float = Field(default=0.5, description="Weight of embedding similarity in support.")
    semantic_floor: float = Field(
        default=0.25, description="Cosine at or below which a claim counts as semantically unrelated."
    )
    semantic_ceiling: float = Field(
        default=0.8, description="Cosine at or above which a claim counts as a full paraphrase."
    )
    identifier_cap: float = Field(
        default=0.2, description="Support cap for a claim whose number or identifier is not in the source."
    )
    code_missing_tolerance: float = Field(
        default=0.25,
        description="A code block may use this fraction of API-looking names absent from the source "
        "(user variable names in an adapted example) before the identifier cap applies.",
    )
    other_source_discount: float = Field(
        default=0.8, description="Factor on support found in a source the claim did not cite."
    )
    uncited_discount: float = Field(
        default=0.7, description="Factor on the best support of a claim that cites nothing."
    )
    min_claim_terms: int = Field(
        default=2,
        description="A sentence with fewer content words and no identifier or number is connective "
        "text ('For example:') and is reported but not scored.",
    )
    max_claim_weight: int = Field(
        default=40,
        description="Cap on one claim's weight (content words) so a long code block cannot dominate.",
    )
    max_windows_per_source: int = Field(
        default=24, description="Sentence windows embedded per source (bounds the embedding cost)."
    )
    dense_weight: float = Field(default=0.5, description="Relevance weight of max question–evidence cosine.")
    coverage_weight: float = Field(
        default=0.4, description="Relevance weight of the question's key terms found in the cited evidence."
    )
    margin_weight: float = Field(
        default=0.1, description="Relevance weight of the top retrieval score's margin over the rest."
    )
    dense_floor: float = Field(
        default=0.25,
        description="Question–evidence cosine that counts as unrelated. With all-MiniLM-L6-v2, sources that "
        "answer a question score ≈0.5–0.8, same-product but off-topic ones ≈0.2–0.35, other topics < 0.1.",
    )
    dense_ceiling: float = Field(
        default=0.6, description="Question–evidence cosine that counts as on target."
    )
    margin_full: float = Field(
        default=0.5, description="Relative margin (top − mean of rest) / top that counts as fully confident."
    )
    entity_weight: float = Field(
        default=2.0, description="Weight of an identifier or named entity among the question's key terms."
    )
    missing_identifier_relevance_cap: float = Field(
        default=0.3,
        description="Relevance cap when the question names code identifiers and no source mentions any.",
    )


class ProviderSettings(BaseModel):
    kind: Literal["openai", "anthropic"]
    base_url: str = Field(
        description="Server root or its /v1 URL, e.g. https://api.openai.com/v1, http://127.0.0.1:11434."
    )
    model: str
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the key (read per call, never logged). "
        "None for local servers that need no key (Ollama, vLLM).",
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Read timeout of one HTTP attempt.")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    deadline_s: float = Field(default=90.0, gt=0, description="Cap on one generate() call, retries included.")
    max_retries: int = Field(default=3, ge=0, description="Attempts after the first one.")
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=8.0, ge=0)
    price_per_mtok_in: float = Field(default=0.0, ge=0, description="USD per million input tokens.")
    price_per_mtok_out: float = Field(default=0.0, ge=0, description="USD per million output tokens.")
    temperature: float = 0.0
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = Field(
        default="max_tokens",
        description="OpenAI-compatible only: newer OpenAI models take max_completion_tokens.",
    )
    anthropic_version: str = "2023-06-01"


class RetrievalSettings(BaseModel):
    # k=10 trusts the head of each list more than the classic 60; with dense ahead of BM25 that kept
    # fusion above dense alone on all three eval sets (Django, FAQ-derived, MCP spec; docs/evals.md).
    rrf_k: int = Field(default=10, ge=1, le=1000, description="Reciprocal rank fusion constant.")
    # Dense retrieval leads BM25 by ~0.2 recall@10 on our evals; equal-weight RRF then loses to dense
    # alone, as published BEIR fusion runs predict. 0.25 beat both single retrievers (docs/evals.md).
    bm25_weight: float = Field(default=0.25, ge=0.0, le=10.0, description="RRF weight of BM25 lists.")
    dense_weight: float = Field(default=1.0, ge=0.0, le=10.0, description="RRF weight of dense lists.")
    rewrite_weight: float = Field(
        default=0.3, ge=0.0, le=10.0, description="Multiplier on lists retrieved for secondary phrasings."
    )
    rewrites: bool = Field(default=True, description="Add offline rewritten phrasings of each query.")
    rewrite_feedback: bool = Field(
        default=False, description="Add the feedback phrasing (terms from the headings of the top BM25 hits)."
    )
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
    resource_page_size: int = Field(
        default=100, ge=1, le=1000, description="Resources per `resources/list` page."
    )


class AuthSettings(BaseModel):
    tenants_file: Path | None = None


class AuditSettings(BaseModel):
    path: Path | None = Field(
        default=None, description="Audit log file; default <data_dir>/audit/audit.jsonl."
    )


class AnswerSettings(BaseModel):
    backend: Literal["extractive", "openai", "anthropic", "sampling"] = Field(
        default="extractive",
        description="Who writes answers: `extractive` (offline, quotes source sentences), a remote "
        "`openai`/`anthropic` provider (needs `provider`), or the MCP client's own model (`sampling`).",
    )
    provider: ProviderSettings | None = Field(
        default=None, description="The remote model for the openai/anthropic backends."
    )
    depth: int = Field(default=8, ge=1, le=50, description="Retrieved chunks considered per question.")
    context_tokens: int = Field(
        default=1500,
        ge=100,
        le=50_000,
        description="Token budget of the sources given to the answer writer (whole chunks, rank order).",
    )
    max_sentences: int = Field(
        default=4, ge=1, le=12, description="Extractive backend: sentences quoted at most."
    )
    max_output_tokens: int = Field(
        default=800, ge=50, le=16_000, description="Cap on a model's reply (also bounded by max_tokens)."
    )
    deadline_s: float = Field(
        default=45.0,
        gt=0,
        le=600,
        description="Overall time for a model (remote or sampling) to answer before the extractive "
        "backend answers instead.",
    )
    grounding: GroundingSettings = Field(default_factory=GroundingSettings)

    @model_validator(mode="after")
    def _provider_matches_backend(self) -> AnswerSettings:
        if self.backend in ("openai", "anthropic"):
            if self.provider is None:
                raise ValueError(
                    f"answer.backend = {self.backend!r} needs an [answer.provider] table "
                    f"(kind = {self.backend!r}, base_url, model, api_key_env)"
                )
            if self.provider.kind != self.backend:
                raise ValueError(
                    f"answer.backend is {self.backend!r} but answer.provider.kind is "
                    f"{self.provider.kind!r}; make them the same"
                )
        return self


class CacheSettings(BaseModel):
    enabled: bool = Field(default=True, description="Reuse answers to repeated questions.")
    similarity: float = Field(
        default=0.97,
        ge=0.5,
        le=1.0,
        description="Question-embedding cosine at or above which a cached answer is reused "
        "(same tenant, collections, version and index generations only).",
    )
    max_entries: int = Field(default=1024, ge=1, le=1_000_000, description="LRU bound.")
    ttl_s: float | None = Field(
        default=3600.0, gt=0, description="Seconds an answer stays reusable; None keeps it until evicted."
    )


class CollectionSettings(BaseModel):
    """Serving choices for one collection (`[collections.<name>]`)."""

    default_version: str = Field(
        default="latest",
        description="What a search without `version` reads: a label, 'latest' or a range such as '4.x'.",
    )


class ServerSettings(IndexerSettings):
    collections: dict[str, CollectionSettings] = Field(
        default_factory=dict, description="Per-collection serving settings, by collection name."
    )
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)

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

    def default_version(self, collection: str) -> str:
        settings = self.collections.get(collection)
        return settings.default_version if settings is not None else "latest"

    @property
    def audit_path(self) -> Path:
        return self.audit.path or self.data_dir / "audit" / "audit.jsonl"
