"""`python -m fal_mcp` runs the same entry point as the `fal-mcp` console script."""

from fal_mcp.cli import main

if __name__ == "__main__":
    main()
