"""docgate indexer: documentation sources → immutable, searchable index generations."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The installed distribution's version: one number for both commands, the manifest and serverInfo.
    __version__ = version("docgate")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
