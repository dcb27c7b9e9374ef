"""docgate server: answers MCP tool calls over the published index generations."""
