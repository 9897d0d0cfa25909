"""Docker-compatible endpoints: each project's containers, through the Docker Engine API.

A layer beside `api/` (it calls services and identity, never the REST routes): `mapping.py` and
`views.py` are pure (create body -> cell fields, cell -> `ps`/`inspect`); `base.py`,
`containers.py`, `streams.py`, `server.py` make one endpoint's aiohttp application;
`supervisor.py` runs a TLS listener per endpoint in the server process. See docs/docker.md.
"""
