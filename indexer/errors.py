"""Errors the indexer raises, each with a message a user can act on.

    IndexerError
    ├── SourceError           missing/unreadable source path, empty corpus
    ├── CollectionNotFound    no published generation for a collection name
    ├── InvalidCollectionName
    ├── CorruptGeneration     manifest missing/unreadable, ID sets disagree, store will not open
    │   └── FormatMismatch    written by a docgate with another index format: rebuild it
    ├── ModelMismatch         a generation embedded with another model/dimension than configured
    ├── EmbeddingModelUnavailable  the offline model files are not installed
    ├── BuildLocked           another build of the same collection is running
    ├── CrawlFailed           a site cannot be crawled: start URL refused, unreachable or empty
    └── EmbeddingServiceFailed  a remote embedding API failed: down, timed out, refused, wrong dimension

The CLIs turn these into one-line messages and non-zero exit codes; the server turns them
into MCP tool errors. Nothing else is expected to escape.
"""


class IndexerError(Exception):
    """Base class: `str(error)` is the one-line, actionable message."""

    exit_code = 1


class SourceError(IndexerError):
    exit_code = 2


class InvalidCollectionName(IndexerError):
    exit_code = 2


class CollectionNotFound(IndexerError):
    exit_code = 3


class CorruptGeneration(IndexerError):
    exit_code = 4


class FormatMismatch(CorruptGeneration):
    """A generation in an older (or newer) index format; a full build replaces it."""


class ModelMismatch(IndexerError):
    exit_code = 5


class EmbeddingModelUnavailable(IndexerError):
    exit_code = 6


class RerankModelUnavailable(IndexerError):
    """The configured local cross-encoder cannot be loaded (not cached, no network)."""

    exit_code = 6


class BuildLocked(IndexerError):
    exit_code = 7


class CrawlFailed(IndexerError):
    """Nothing was published because the site gave nothing usable (a partial crawl still publishes)."""

    exit_code = 8


class EmbeddingServiceFailed(IndexerError):
    """Nothing was published: the remote embedding API could not embed the chunks."""

    exit_code = 10
