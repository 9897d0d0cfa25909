"""The self-service portal: server-rendered pages (Jinja2) for developers and operators, at
``/portal`` of the server (`install`).

Its own layer beside `api/`: it signs people in as an OAuth client of the tenant's issuer
(authorization code + PKCE, `oauth`, `auth`), keeps a server-side session (`session`), and calls
`services/` with the caller's Principal, as `api/` does (`data`; why not the SDK: see there).
Pages: `pages` (dashboard, cells), `ops` (hosts, quotas), `streams` (server-sent events: a cell's
status and logs); `forms` reads forms into the API's request models. htmx is vendored under
`static/` (with its licence); `static/portal.js` follows the event streams. See docs/portal.md.
"""

from cellplane.portal.app import create_portal, install

__all__ = ["create_portal", "install"]
