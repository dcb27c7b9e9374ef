"""The one settings tree of docgate: code defaults < TOML (`--config FILE` or `DOCGATE_CONFIG`) < env.

`docgate-index` and `docgate` read the same file, so both validate the whole tree: the indexer's
sections (embedding, chunking, vectors) and the server's (retrieval, serve, auth, audit, answer,
cache, and `[collections.<name>]` per collection). It lives here because the indexer never imports the server. Every table forbids unknown
keys, in the file and in the environment alike: `[retrieval] rrf = 30` or
`DOCGATE_RETRIEVAL__RRF=30` is a startup error naming the key and the valid ones
(`indexer.settings_check` words it), never a silently ignored setting.

Nested keys use a double underscore in the environment: `DOCGATE_VECTORS__URL`,
`DOCGATE_EMBEDDING__BATCH_SIZE`. `DOCGATE_DATA_DIR` moves every index and model file. Short names
for the settings set most often: `DOCGATE_TENANTS_FILE` (auth.tenants_file), `DOCGATE_AUDIT_LOG`
(audit.path) and `DOCGATE_TENANT` (serve.tenant); they win over the long forms.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Self

import platformdirs
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from indexer.retrying import RetryPolicy
from indexer.settings_check import SettingsError, explain, unknown_environment_names

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# The TOML file in effect for the settings being loaded; set only inside `load()`.
_config_file: ContextVar[Path | None] = ContextVar("docgate_config_file", default=None)


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("docgate", appauthor=False))


class Section(BaseModel):
    """One table of the settings file; a key it does not declare is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid")


class RemoteEmbeddingSettings(RetryPolicy, Section):
    """An OpenAI-compatible `/v1/embeddings` API (OpenAI, Azure OpenAI, Ollama, vLLM, LM Studio, TEI)."""

    url: str = Field(
        default="http://127.0.0.1:11434/v1",
        description="Base URL; `/embeddings` is appended (Azure: the deployment URL, with api_version).",
    )
    api_key_env: str | None = Field(
        default=None, description="Env var holding the API key (sent as a bearer token); unset: no key."
    )
    api_version: str | None = Field(default=None, description="Azure OpenAI `api-version` query parameter.")
    dimension: int | None = Field(
        default=None,
        ge=1,
        le=65536,
        description="Vector size the model returns; required (checked on every reply).",
    )
    batch_size: int = Field(default=64, ge=1, le=2048, description="Texts per request.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Requests in flight at once during a build.")
    timeout_s: float = Field(default=60.0, gt=0, le=600, description="Per request, while building.")
    query_timeout_s: float = Field(
        default=3.0,
        gt=0,
        le=120,
        description="Whole budget for embedding one search query, retries included.",
    )
    price_per_mtok: float = Field(
        default=0.0, ge=0, description="USD per million input tokens (build report)."
    )


class EmbeddingSettings(Section):
    provider: Literal["fastembed", "openai"] = Field(
        default="fastembed", description="fastembed: in process (offline default); openai: a remote API."
    )
    model: str = Field(
        default=DEFAULT_MODEL,
        description="fastembed model name (the default ships offline), or the remote API's model name.",
    )
    model_dir: Path | None = Field(
        default=None,
        description="Directory with model.onnx + tokenizer files; default: assembled under the data dir.",
    )
    max_length: int = Field(default=256, ge=16, le=8192, description="Token limit per embedded text.")
    # Measured on the Django docs: 8 peaks at ~0.6 GB instead of ~1.5 GB (ONNX Runtime sizes its memory
    # pool for the largest batch) and is no slower on 2 cores.
    batch_size: int = Field(default=8, ge=1, le=1024)
    threads: int | None = Field(default=None, ge=1, description="ONNX Runtime threads; default: all cores.")
    providers: list[str] | None = Field(
        default=None,
        description=(
            "ONNX Runtime execution providers in order of preference, e.g. ['CUDAExecutionProvider', "
            "'CPUExecutionProvider'] with the `gpu` extra; default: CPU. Vectors are the same model's, "
            "so an index built on a GPU is served on a CPU and back."
        ),
    )
    query_precision: Literal["model", "int8"] = Field(
        default="model",
        description=(
            "model: search queries run the model as published; int8 (needs the `int8` extra; the bundled "
            "model or model_dir, on the CPU): an int8 copy, about 0.7x the CPU per query, vectors within a "
            "cosine of 0.99 but some first hits move (docs/benchmarks.md). Documents and answers always use "
            "the model as published."
        ),
    )
    query_cache_size: int = Field(
        default=1024, ge=0, le=1_000_000, description="Recent search queries whose vectors are kept (0: off)."
    )
    query_prefix: str | None = Field(
        default=None,
        description="Text put before every query; default: what the model expects (indexer/embedding/profiles.py).",
    )
    passage_prefix: str | None = Field(
        default=None, description="Text put before every indexed passage; default: what the model expects."
    )
    remote: RemoteEmbeddingSettings = Field(default_factory=RemoteEmbeddingSettings)

    @model_validator(mode="after")
    def _remote_needs_a_dimension(self) -> Self:
        # Known before any call, so the server can check a generation without reaching the API.
        if self.provider == "openai" and self.remote.dimension is None:
            raise ValueError("embedding.remote.dimension is required with embedding.provider = 'openai'")
        return self


class ChunkingSettings(Section):
    """Sizes in model tokens of what is embedded: the title and heading path line plus the body."""

    target_tokens: int = Field(default=220, ge=32, le=2048, description="Pack blocks up to about this size.")
    # 254 = the model's 256-token window minus its two special tokens: nothing a chunk holds is
    # left out of its vector.
    max_tokens: int = Field(default=254, ge=32, le=4096, description="Hard ceiling for one chunk.")
    min_tokens: int = Field(
        default=60, ge=0, le=1024, description="Smaller sections merge with the next one."
    )
    overlap_tokens: int = Field(default=40, ge=0, le=512, description="Tail of a split section repeated.")


class VectorSettings(Section):
    url: str | None = Field(
        default=None,
        description="Qdrant server URL (http://host:6333) for server/cluster mode; unset = embedded store.",
    )
    api_key_env: str = Field(default="QDRANT_API_KEY", description="Env var holding the Qdrant API key.")
    hnsw_m: int = Field(default=16, ge=4, le=128)
    hnsw_ef_construct: int = Field(default=100, ge=8, le=1024)


class GroundingSettings(Section):
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
    undocumented_product_chunks: int = Field(
        default=3,
        ge=-1,
        le=1000,
        description="Abstain when the question names a product no retrieved source mentions and at most "
        "this many chunks of the collection do (server/answering/products.py); -1: off.",
    )


class ProviderSettings(Section):
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


class RerankSettings(RetryPolicy, Section):
    """A cross-encoder after fusion: a rerank API over HTTP (Cohere/Jina `{query, documents}` or TEI
    `{query, texts}`), or a fastembed `TextCrossEncoder` in process."""

    enabled: bool = Field(default=False, description="Reorder the head of each fused list by a reranker.")
    backend: Literal["http", "fastembed"] = Field(
        default="http", description="http: a rerank API at `url`; fastembed: a local cross-encoder `model`."
    )
    model_dir: Path | None = Field(
        default=None, description="fastembed: a folder holding the cross-encoder's files (offline)."
    )
    download: bool = Field(
        default=True,
        description="fastembed: fetch the model when it is not cached (at server start); false: offline.",
    )
    url: str = Field(default="http://127.0.0.1:8080/rerank", description="Full URL of the rerank endpoint.")
    api: Literal["cohere", "tei"] = Field(
        default="cohere", description="cohere: Cohere/Jina/vLLM request shape; tei: Hugging Face TEI."
    )
    model: str | None = Field(
        default=None,
        description="http: model name sent with each request (cohere shape); fastembed: the cross-encoder "
        "(default Xenova/ms-marco-MiniLM-L-6-v2).",
    )
    api_key_env: str | None = Field(
        default=None, description="Env var holding the bearer token; unset: none."
    )
    top_n: int = Field(default=20, ge=2, le=200, description="Fused candidates sent to the reranker.")
    max_chars: int = Field(default=2000, ge=100, le=20000, description="Characters of each chunk sent.")
    timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Whole budget per search, retries included; then the fused order.",
    )
    max_retries: int = Field(default=1, ge=0, le=10, description="Retries within timeout_s.")


class RetrievalSettings(Section):
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
    # Adaptive fusion (server/retrieval/fusion.py): each idea measured on every eval set, docs/evals.md.
    fusion: Literal["plain", "adaptive"] = Field(
        default="adaptive",
        description="`plain`: fixed-weight RRF; `adaptive`: BM25 weight follows its agreement with dense, "
        "and pages rank by the evidence of all their chunks.",
    )
    agreement_floor: float = Field(
        default=0.5,
        ge=0.0,
        le=10.0,
        description="Share of bm25_weight kept when BM25 and dense share nothing.",
    )
    agreement_span: float = Field(
        default=2.0, ge=0.0, le=10.0, description="Added share of bm25_weight when their top 10 are the same."
    )
    page_evidence: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Weight of a page's 2nd chunk (3rd: its square, …); 0: off."
    )
    snippet_chars: int = Field(default=240, ge=40, le=2000)
    rerank: RerankSettings = Field(default_factory=RerankSettings)


class ServeSettings(Section):
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
    tenant: str = Field(
        default="default", description="Tenant of the stdio transport, the local operator (DOCGATE_TENANT)."
    )
    max_sessions_per_tenant: int = Field(
        default=16, ge=1, le=10_000, description="Open MCP sessions one tenant may hold over HTTP."
    )
    session_idle_timeout_s: float = Field(
        default=1800.0, gt=0, le=86_400, description="An HTTP session unused this long is closed."
    )
    resource_page_size: int = Field(
        default=100, ge=1, le=1000, description="Resources per `resources/list` page."
    )
    # An SSE stream per POST costs the server about 1.5 ms of CPU per call and, with the MCP SDK's
    # client, a new connection per call (it closes the stream once the answer arrived); a plain JSON
    # body keeps the connection. Only a tool that messages the client mid-call needs the stream:
    # `grounded_answer` asking the client's model (answer.backend = "sampling").
    http_responses: Literal["auto", "json", "sse"] = Field(
        default="auto",
        description="How a POST is answered over HTTP: `json` one JSON body, `sse` an event stream; "
        "`auto`: json unless answer.backend is sampling.",
    )


class CollectionSettings(Section):
    """Serving choices for one collection (`[collections.<name>]`)."""

    default_version: str = Field(
        default="latest",
        description="What a search without `version` reads: a label, 'latest' or a range such as '4.x'.",
    )


class AuthSettings(Section):
    tenants_file: Path | None = Field(
        default=None,
        description="Tenants, grants and limits (DOCGATE_TENANTS_FILE); unset = single-user, loopback only.",
    )
    key_secret_file: Path | None = Field(
        default=None,
        description="Server secret that API key hashes are keyed with; default <tenants file stem>.keys.secret.",
    )
    auth_failures_per_minute: int = Field(
        default=30,
        ge=1,
        le=10_000_000,
        description="Failed key checks allowed per client address and per key id.",
    )


class AuditSettings(Section):
    path: Path | None = Field(
        default=None, description="Audit log file (DOCGATE_AUDIT_LOG); default <data_dir>/audit/audit.jsonl."
    )
    key_dir: Path | None = Field(
        default=None,
        description="Chain key and checkpoint signing keys; default <data_dir>/server/audit-keys.",
    )
    checkpoint_every: int = Field(default=100, ge=1, description="Sign a checkpoint every N records.")
    checkpoint_interval_s: float = Field(
        default=300.0, gt=0, description="...and at least this often while records are written."
    )
    sink_url: str | None = Field(
        default=None, description="HTTP endpoint that receives every checkpoint as JSON (POST)."
    )
    unauthenticated_interval_s: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="Requests without a valid key from one address within this window are written as "
        "one record with a count (the first of them at once).",
    )


class AnswerSettings(Section):
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


class CacheSettings(Section):
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


class Settings(BaseSettings):
    """The whole tree. `IndexerSettings` and `server.settings.ServerSettings` name this same class."""

    model_config = SettingsConfigDict(
        env_prefix="DOCGATE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: str = "INFO"
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    vectors: VectorSettings = Field(default_factory=VectorSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    collections: dict[str, CollectionSettings] = Field(
        default_factory=dict, description="Per-collection serving settings, by collection name."
    )

    # Short environment names. An alias is matched as the whole variable name (the prefix is not
    # added to it), so these fields read only DOCGATE_TENANTS_FILE etc.; the validator below moves
    # each into its table. Excluded from dumps: the tree has one place for every value.
    short_tenants_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("DOCGATE_TENANTS_FILE"), exclude=True, repr=False
    )
    short_audit_log: Path | None = Field(
        default=None, validation_alias=AliasChoices("DOCGATE_AUDIT_LOG"), exclude=True, repr=False
    )
    short_tenant: str | None = Field(
        default=None, validation_alias=AliasChoices("DOCGATE_TENANT"), exclude=True, repr=False
    )

    @model_validator(mode="after")
    def _short_names_fill_their_tables(self) -> Self:
        if self.short_tenants_file is not None:
            self.auth.tenants_file = self.short_tenants_file
        if self.short_audit_log is not None:
            self.audit.path = self.short_audit_log
        if self.short_tenant:
            self.serve.tenant = self.short_tenant
        return self

    @model_validator(mode="after")
    def _chunks_fit_the_model(self) -> Self:
        window = self.embedding.max_length - 2  # [CLS] and [SEP]
        if self.chunking.max_tokens > window:
            raise ValueError(
                f"chunking.max_tokens ({self.chunking.max_tokens}) exceeds what the model embeds "
                f"(embedding.max_length {self.embedding.max_length} minus 2 special tokens = {window}); "
                "the rest of each long chunk would be searchable by keyword but invisible to dense search"
            )
        if self.chunking.target_tokens > self.chunking.max_tokens:
            raise ValueError(
                f"chunking.target_tokens ({self.chunking.target_tokens}) is above "
                f"chunking.max_tokens ({self.chunking.max_tokens})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @classmethod
    def load(cls, config: Path | None = None, **overrides: Any) -> Self:
        """Load settings; `config` (or `DOCGATE_CONFIG`) names a TOML file that must exist.

        Raises FileNotFoundError for a missing file and `SettingsError` (a ValueError) with a
        one-line message for a broken file, an unknown key, a misspelled `DOCGATE_*` variable or
        an invalid value.
        """
        path = config or (Path(os.environ["DOCGATE_CONFIG"]) if os.environ.get("DOCGATE_CONFIG") else None)
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(f"config file {path} does not exist")
            # Parse once here so a syntax error names the file instead of surfacing deep inside pydantic.
            try:
                tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as error:
                raise SettingsError(f"config file {path} is not valid TOML: {error}") from error
        unknown = unknown_environment_names(cls, os.environ)
        if unknown:
            raise SettingsError(unknown[0])
        token = _config_file.set(path)
        try:
            return cls(**overrides)
        except ValidationError as error:
            raise SettingsError(explain(error, cls, path)) from None
        finally:
            _config_file.reset(token)

    @property
    def collections_dir(self) -> Path:
        return self.data_dir / "collections"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def audit_path(self) -> Path:
        return self.audit.path or self.data_dir / "audit" / "audit.jsonl"

    @property
    def audit_key_dir(self) -> Path:
        return self.audit.key_dir or self.data_dir / "server" / "audit-keys"

    def default_version(self, collection: str) -> str:
        """What a search without `version` reads in `collection` (`latest` unless configured)."""
        settings = self.collections.get(collection)
        return settings.default_version if settings is not None else "latest"


# The indexer's name for the tree (it reads the indexer's sections; it validates all of them).
IndexerSettings = Settings
