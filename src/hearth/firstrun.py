"""First start on an empty database: an organization, a default project, two keys.

The secrets are shown once and written to a file only the owner can read;
the database keeps nothing but their hashes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hearth.store.db import Database
from hearth.store.keys import BootstrapResult, bootstrap

KEYS_FILE = "initial-keys.txt"


def initialize(database: Database, data_dir: Path) -> BootstrapResult | None:
    with database.session() as session:
        created = bootstrap(session)
    if created is None:
        return None
    text = (
        f"# Hearth's first keys, created when the database was empty. Keep them secret.\n"
        f"organization={created.organization.id}\n"
        f"project={created.project.id}\n"
        f"HEARTH_API_KEY={created.project_key.secret}\n"
        f"HEARTH_ADMIN_KEY={created.admin_key.secret}\n"
    )
    path = data_dir / KEYS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    print(
        "\nHearth created its first keys (shown once; also saved to "
        f"{path}, readable only by you):\n"
        f"  project key (use it as OPENAI_API_KEY): {created.project_key.secret}\n"
        f"  admin key (organization administration): {created.admin_key.secret}\n",
        file=sys.stderr,
        flush=True,
    )
    return created
