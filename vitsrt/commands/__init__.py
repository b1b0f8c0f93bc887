"""Subcommands of the `vitsrt` CLI: argument parsing here, heavy imports inside each `run`."""
