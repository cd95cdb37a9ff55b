"""CLI subcommands; see gtseg.cli."""
