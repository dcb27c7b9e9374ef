"""The MCP edge: tool declarations, the gateway around every call, streamable HTTP serving."""
