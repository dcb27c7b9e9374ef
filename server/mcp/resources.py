"""Pages for MCP: the `read_page` core and every page as a resource `docgate://{collection}/{version}/{path}`.

`resources/list` is paginated (signed cursors) and lists only the caller's collections; the resource
template's `collection`, `version` and `path` arguments complete from the same view. Reading a
resource returns the page as Markdown. Every one of these requests goes through the gateway, so it
is authenticated, limited and audited exactly like a tool call (tool names `resources/list`,
`resources/read`, `completion/complete`), and a page of another tenant answers like an unknown one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    ListResourcesResult,
    ListResourceTemplatesResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    ResourceTemplateReference,
    TextResourceContents,
)
from pydantic import BaseModel

from indexer.embedding import Embedder
from server.errors import UnknownPage
from server.mcp.gateway import CallRecord, Gateway
from server.retrieval import cursors, page_sources, pages
from server.retrieval.catalog import Catalog, CatalogView
from server.retrieval.page_sources import PageRequest
from server.retrieval.pages import PageResult
from server.retrieval.service import Access
from server.security import guards
from server.security.guards import InvalidArgument

URI_TEMPLATE = "docgate://{collection}/{version}/{path}"
LIST_PAGE_SIZE = 100
COMPLETION_LIMIT = 100
SOURCE_MAX_CHARS = 2048
SECTION_MAX_CHARS = 300
# A resource read returns the whole page; this bounds one response all the same.
RESOURCE_MAX_TOKENS = 200_000


@dataclass(frozen=True)
class PageReader:
    catalog: Catalog
    embedder: Embedder
    secret: bytes
    page_size: int = LIST_PAGE_SIZE

    def view_for(self, access: Access) -> tuple[CatalogView, list[str], list[str]]:
        view = self.catalog.view()
        allowed = [name for name in sorted(view.snapshots) if access.allowed(name)]
        hidden = [name for name in sorted(view.snapshots) if not access.allowed(name)]
        return view, allowed, hidden

    def read(self, access: Access, request: PageRequest, record: CallRecord) -> tuple[PageResult, int]:
        view, allowed, hidden = self.view_for(access)
        try:
            result, size = pages.read_page(
                view,
                allowed,
                request,
                tenant=access.tenant,
                secret=self.secret,
                count_tokens_batch=self.embedder.count_tokens_batch,
                count_tokens=self.embedder.count_tokens,
                truncate=self.embedder.truncate_to_tokens,
            )
        except UnknownPage:
            if page_sources.hidden_page_exists(view, hidden, request):
                record.denied_reason = "page_not_granted"
            raise
        record.chunk_ids = result.chunk_ids
        record.generations = {result.collection: result.generation}
        return result, size


def page_request(
    source: object, section: object, max_tokens: object, cursor: object, collection: object
) -> PageRequest:
    """Validated `read_page` arguments."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidArgument(
            "source: give a hit's `source` or `url`, a page path, or a docgate:// URI", argument="source"
        )
    if len(source) > SOURCE_MAX_CHARS:
        raise InvalidArgument(
            f"source: is {len(source)} characters; the limit is {SOURCE_MAX_CHARS}", argument="source"
        )
    if section is not None and (
        not isinstance(section, str) or not section.strip() or len(section) > SECTION_MAX_CHARS
    ):
        raise InvalidArgument(
            f"section: give an anchor or a heading of the page, at most {SECTION_MAX_CHARS} characters",
            argument="section",
        )
    names = guards.validate_collections([collection]) if collection is not None else None
    if cursor is not None and not isinstance(cursor, str):
        raise InvalidArgument(
            "cursor: pass the `next_cursor` string of the previous response", argument="cursor"
        )
    return PageRequest(
        source=source,
        collection=names[0] if names else None,
        section=section,
        max_tokens=guards.validate_max_tokens(max_tokens),
        cursor=cursor,
    )


class ResourcePage(BaseModel):
    """What a resource read returns to the gateway (the audit counts its tokens)."""

    uri: str
    text: str


class ResourceListing(BaseModel):
    resources: list[Resource]
    next_cursor: str | None


class Completions(BaseModel):
    values: list[str]
    total: int


def _mcp_error(error: ToolError) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=str(error))


def register_resources(mcp: MCPServer, gateway: Gateway, reader: PageReader) -> None:
    """Pages as resources: list (paginated, per tenant), template, read, and argument completion."""
    server = mcp._lowlevel_server  # the high-level registry lists static resources only

    async def list_resources(ctx: Any, params: PaginatedRequestParams) -> ListResourcesResult:
        def core(access: Access, record: CallRecord) -> ResourceListing:
            view, allowed, _ = reader.view_for(access)
            entries = page_sources.list_pages(view, allowed)
            context = cursors.digest(access.tenant, "resources/list", allowed, view.generations)
            offset = cursors.decode(reader.secret, params.cursor, context) if params.cursor else 0
            chosen = entries[offset : offset + reader.page_size]
            end = offset + len(chosen)
            record.generations = {name: view.snapshots[name].generation for name in allowed}
            return ResourceListing(
                resources=[
                    Resource(
                        uri=e.uri,
                        name=e.path,
                        title=e.title,
                        description=f"{e.collection} {e.version}",
                        mime_type="text/markdown",
                    )
                    for e in chosen
                ],
                next_cursor=cursors.encode(reader.secret, end, context) if end < len(entries) else None,
            )

        try:
            listing = await gateway.call("resources/list", {"cursor": params.cursor}, core)
        except ToolError as error:
            raise _mcp_error(error) from error
        return ListResourcesResult(resources=listing.resources, next_cursor=listing.next_cursor)

    async def list_templates(ctx: Any, params: PaginatedRequestParams) -> ListResourceTemplatesResult:
        return ListResourceTemplatesResult(
            resource_templates=[
                ResourceTemplate(
                    name="page",
                    title="Documentation page",
                    uri_template=URI_TEMPLATE,
                    description="A whole page as Markdown; `version` may also be 'latest' or a range such as '4.x'.",
                    mime_type="text/markdown",
                )
            ]
        )

    async def read_resource(ctx: Any, params: ReadResourceRequestParams) -> ReadResourceResult:
        uri = str(params.uri)

        def core(access: Access, record: CallRecord) -> ResourcePage:
            if not uri.startswith(page_sources.RESOURCE_SCHEME):
                raise UnknownPage(f"unknown resource {uri[:200]!r}; resources look like {URI_TEMPLATE}")
            if len(uri) > SOURCE_MAX_CHARS:
                raise InvalidArgument(f"uri: is {len(uri)} characters; the limit is {SOURCE_MAX_CHARS}")
            # A resource is the whole page: no client budget applies, only this server-side bound.
            request = PageRequest(uri, None, None, RESOURCE_MAX_TOKENS, None)
            result, size = reader.read(access, request, record)
            record.tokens_out = size
            return ResourcePage(uri=result.uri, text=result.text)

        try:
            page = await gateway.call("resources/read", {"uri": uri}, core)
        except ToolError as error:
            raise _mcp_error(error) from error
        return ReadResourceResult(
            contents=[TextResourceContents(uri=uri, text=page.text, mime_type="text/markdown")]
        )

    async def complete(ctx: Any, params: CompleteRequestParams) -> CompleteResult:
        ref = params.ref
        if not isinstance(ref, ResourceTemplateReference) or ref.uri != URI_TEMPLATE:
            return CompleteResult(completion=Completion(values=[], total=0, has_more=False))
        name = params.argument.name
        value = params.argument.value
        given = (params.context.arguments if params.context else None) or {}

        def core(access: Access, record: CallRecord) -> Completions:
            view, allowed, _ = reader.view_for(access)
            collections = [c for c in allowed if given.get("collection") in (None, c)]
            if name == "collection":
                found = [c for c in allowed if c.startswith(value)]
            elif name == "version":
                found = sorted(
                    {v for c in collections for v in view.snapshots[c].versions if v.startswith(value)}
                )
            elif name == "path":
                entries = page_sources.list_pages(view, collections)
                found = [
                    e.path
                    for e in entries
                    if e.path.startswith(value) and given.get("version") in (None, e.version)
                ]
            else:
                found = []
            return Completions(values=found[:COMPLETION_LIMIT], total=len(found))

        try:
            result = await gateway.call("completion/complete", {"argument": name, "value": value}, core)
        except ToolError as error:
            raise _mcp_error(error) from error
        return CompleteResult(
            completion=Completion(
                values=result.values, total=result.total, has_more=result.total > len(result.values)
            )
        )

    server.add_request_handler("resources/list", PaginatedRequestParams, list_resources)
    server.add_request_handler("resources/templates/list", PaginatedRequestParams, list_templates)
    server.add_request_handler("resources/read", ReadResourceRequestParams, read_resource)
    server.add_request_handler("completion/complete", CompleteRequestParams, complete)
