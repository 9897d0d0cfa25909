"""`python -m cellplane`: the same as the `cellplane` command (used by `up` to start its children)."""

from cellplane.cli.main import app

app()
