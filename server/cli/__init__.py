"""The `docgate` command line: serve, search, ask, eval, keys, audit, trace."""
