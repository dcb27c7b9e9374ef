"""Build or update one collection: gather → reuse unchanged → embed → publish a new generation.

A source is a folder (`indexer.sources.walk_folder`) or a website (`indexer.crawl.crawl`).
`build` parses and embeds everything. `update` reuses what has not changed since the published
generation:

- folder: each document's content hash is compared with the manifest; unchanged documents keep
  their chunks and vectors (copied from the old generation, never re-embedded);
- site: the manifest's validators (ETag, Last-Modified, content hash, links) go back to the
  crawler, which asks conditionally; pages it reports unchanged keep their chunks and vectors
  without being fetched in full, parsed or embedded again.

Changed documents are re-parsed and only chunks whose text changed are embedded again; documents
gone from the source disappear. An update that finds no change publishes nothing.

Modules, in the order a build runs: `orchestrator` (lock, number, decide), `gather` (folder walk or
crawl, parse, chunk), `reuse` (what the published generation still offers), `embed` (vectors,
copied where the text is unchanged), `publish` (BM25 index, manifest, fsync, CURRENT). `run`
holds the state they share; `request` what a caller passes in and gets back.
"""

from __future__ import annotations

from indexer.build.embed import EMBED_BATCH
from indexer.build.orchestrator import build_collection
from indexer.build.request import BuildRequest, BuildSummary, Progress, chunking_fingerprint

__all__ = [
    "EMBED_BATCH",
    "BuildRequest",
    "BuildSummary",
    "Progress",
    "build_collection",
    "chunking_fingerprint",
]
