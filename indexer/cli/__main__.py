"""`python -m indexer.cli` runs the `docgate-index` command."""

from indexer.cli.app import main

if __name__ == "__main__":
    main()
