"""Settings: code defaults < `config/docgate.toml` (or `--config FILE`) < `DOCGATE_*` environment.

Nested keys use a double underscore in the environment: `DOCGATE_VECTORS__URL`,
`DOCGATE_EMBEDDING__BATCH_SIZE`. `DOCGATE_DATA_DIR` moves every index and model file.
The server extends this class with its own sections; both read the same TOML file and
ignore the other's sections.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Self

import platformdirs
from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from indexer.retrying import RetryPolicy

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# The TOML file in effect for the settings being loaded; set only inside `load()`.
_config_file: ContextVar[Path | None] = ContextVar("docgate_config_file", default=None)


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("docgate", appauthor=False))


class RemoteEmbeddingSettings(RetryPolicy):
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


class EmbeddingSettings(BaseModel):
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


class ChunkingSettings(BaseModel):
    """Sizes in model tokens of what is embedded: the title and heading path line plus the body."""

    target_tokens: int = Field(default=220, ge=32, le=2048, description="Pack blocks up to about this size.")
    # 254 = the model's 256-token window minus its two special tokens: nothing a chunk holds is
    # left out of its vector.
    max_tokens: int = Field(default=254, ge=32, le=4096, description="Hard ceiling for one chunk.")
    min_tokens: int = Field(
        default=60, ge=0, le=1024, description="Smaller sections merge with the next one."
    )
    overlap_tokens: int = Field(default=40, ge=0, le=512, description="Tail of a split section repeated.")


class VectorSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="Qdrant server URL (http://host:6333) for server/cluster mode; unset = embedded store.",
    )
    api_key_env: str = Field(default="QDRANT_API_KEY", description="Env var holding the Qdrant API key.")
    hnsw_m: int = Field(default=16, ge=4, le=128)
    hnsw_ef_construct: int = Field(default=100, ge=8, le=1024)


class IndexerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DOCGATE_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: str = "INFO"
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    vectors: VectorSettings = Field(default_factory=VectorSettings)

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
        """Load settings; `config` (or `DOCGATE_CONFIG`) names a TOML file that must exist."""
        path = config or (Path(os.environ["DOCGATE_CONFIG"]) if os.environ.get("DOCGATE_CONFIG") else None)
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(f"config file {path} does not exist")
            # Parse once here so a syntax error names the file instead of surfacing deep inside pydantic.
            try:
                tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as error:
                raise ValueError(f"config file {path} is not valid TOML: {error}") from error
        token = _config_file.set(path)
        try:
            return cls(**overrides)
        finally:
            _config_file.reset(token)

    @property
    def collections_dir(self) -> Path:
        return self.data_dir / "collections"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"
