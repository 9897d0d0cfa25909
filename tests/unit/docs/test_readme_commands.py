"""The README's commands work for whatever port and data directory `make up` was given."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.DOTALL)


def test_no_command_in_the_readme_names_a_fixed_server_address() -> None:
    """Cellplane's own API is reached at the configured server; a cell's published port
    (`http://127.0.0.1:8080/`) is the example's own choice."""
    blocks = _shell_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "the README has no shell examples"
    fixed = [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if re.search(r"https?://(127\.0\.0\.1|localhost)(:\d+)?/(v1|identity|docs)\b", line)
        or ":7400" in line
    ]
    # `PORT=7500 make up` serves elsewhere: commands take the server from the CLI's config.
    assert fixed == []
