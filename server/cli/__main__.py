"""`python -m server.cli` runs the `docgate` command."""

from server.cli.main import main

if __name__ == "__main__":
    main()
