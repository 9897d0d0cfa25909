"""Backups of a deployment's server state: `archive` (what is copied, how it is restored) and
`sealed` (the passphrase encryption). Works on files only, beside a running server: no import of
the server's packages (pyproject's import-linter contracts hold it)."""
