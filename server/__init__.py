"""docgate server: the online side that answers MCP tool calls over an index generation."""
