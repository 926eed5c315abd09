"""Who is calling: the identity every service receives, whatever transport the call came by.

The HTTP layer builds a ``Caller`` from the bearer key; a batch line or an
assistant run carries the caller of the request that started it. Nothing
below the HTTP layer reads identity from a request object.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """A caller acting within one project (what every project endpoint scopes its data by)."""

    organization_id: str
    project_id: str
    # None when authentication is disabled (a trusted localhost) or for work Hearth starts itself.
    api_key_id: str | None = None
    user_id: str | None = None
    service_account_id: str | None = None


@dataclass(frozen=True)
class OrganizationCaller:
    """A caller holding an admin key: acts for the organization, not within a project."""

    organization_id: str
    api_key_id: str | None = None
    user_id: str | None = None
