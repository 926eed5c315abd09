"""The ``hearth`` command: serve the API, manage models and keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hearth.catalog.catalog import Catalog, CatalogError, UnknownModel
from hearth.catalog.provision import ModelStore, PullError
from hearth.catalog.user import catalog_for, preload_names
from hearth.settings import Settings

app = typer.Typer(help="Hearth: the OpenAI API, self-hosted.", no_args_is_help=True)
models_app = typer.Typer(help="List, pull, import and remove models.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
invites_app = typer.Typer(help="Accept an invitation to the organization.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(invites_app, name="invites")
console = Console(stderr=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (HEARTH_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (HEARTH_PORT).")] = None,
) -> None:
    """Start the API server, pulling missing default models first."""
    settings = Settings()
    catalog = _catalog(settings)  # a malformed user catalog stops here, with its reason

    from hearth import server
    from hearth.app import create_app

    if settings.pull_on_start:
        _pull(settings, preload_names(settings, catalog))
    server.run(create_app(settings), settings, host or settings.host, port or settings.port)


@app.command()
def worker() -> None:
    """Run background jobs only, against the same database as the servers (no HTTP).

    Start as many as you like, on as many machines: they share one queue.
    Models load when a job first needs them.
    """
    import asyncio
    import logging.config

    from hearth import logs
    from hearth.container import open_container, run_until_signalled

    settings = Settings()
    logging.config.dictConfig(logs.config(settings.log_format, settings.log_level))

    async def work() -> None:
        async with open_container(settings, load_models=False) as container:
            await run_until_signalled(container.worker())

    asyncio.run(work())


@models_app.command("list")
def models_list() -> None:
    """Every model in the catalog (built-in and yours), its aliases and whether it is pulled."""
    settings = Settings()
    store = ModelStore(settings.resolved_models_dir)
    builtin = {spec.id for spec in Catalog.load().models}
    table = Table("model", "kind", "engine", "size", "pulled", "source", "aliases")
    for spec in _catalog(settings).models:
        table.add_row(spec.id, spec.kind, spec.engine, f"{spec.total_bytes / 1e6:.0f} MB",
                      "yes" if store.is_present(spec) else "no",
                      "built-in" if spec.id in builtin else "user", ", ".join(spec.aliases))
    Console().print(table)


@models_app.command("pull")
def models_pull(
    names: Annotated[list[str], typer.Argument(
        help="Model ids or aliases, or hub references: hf:OWNER/REPO[:QUANT or :FILE].")],
    name: Annotated[str | None, typer.Option(help="The id to register a hub model under.")] = None,
) -> None:
    """Fetch models into the models directory, verifying every checksum.

    A hub reference (hf:Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M) is resolved through the hub's
    API (HEARTH_HUB_URL or HF_ENDPOINT), its files checked against the hub's sha256, its
    engine detected, and it is registered in the user catalog.
    """
    _pull(Settings(), names, as_name=name)


@models_app.command("import")
def models_import(
    path: Annotated[Path, typer.Argument(help="A .gguf file or a model folder.")],
    name: Annotated[str | None, typer.Option(help="The model's id (default: from the path).")] = None,
    link: Annotated[bool, typer.Option("--link", help="Link the files instead of copying them.")] = False,
    file: Annotated[str | None, typer.Option(help="Which file, when the folder holds several.")] = None,
) -> None:
    """Register a local model: detected, copied (or linked) into the models directory,
    checksummed and written to the user catalog."""
    from hearth.catalog.detect import DetectionError
    from hearth.catalog.importing import ImportFailed, import_model

    settings = Settings()
    try:
        spec = import_model(path, data_dir=settings.data_dir, store=ModelStore(settings.resolved_models_dir),
                            name=name, link=link, select=file)
    except (DetectionError, ImportFailed, CatalogError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"[green]{spec.id} imported[/green] ({spec.kind}, {spec.engine}); "
                  "restart `hearth serve` to serve it")


@models_app.command("rm")
def models_rm(name: Annotated[str, typer.Argument(help="A model of the user catalog.")]) -> None:
    """Remove a model you added: its user catalog entry and its files."""
    from hearth.catalog.importing import ImportFailed, remove_model

    settings = Settings()
    try:
        removed, _ = remove_model(name, data_dir=settings.data_dir,
                                  store=ModelStore(settings.resolved_models_dir))
    except (ImportFailed, CatalogError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"removed {removed}")


def _catalog(settings: Settings) -> Catalog:
    try:
        return catalog_for(settings)
    except CatalogError as exc:
        console.print(f"[red]the model catalog cannot be used:[/red] {exc}")
        raise typer.Exit(2) from None


def _pull(settings: Settings, names: list[str], *, as_name: str | None = None) -> None:
    from hearth.catalog.hub import hub_endpoint, is_hub_reference, pull_from_hub

    store = ModelStore(settings.resolved_models_dir)
    for reference in [n for n in names if is_hub_reference(n)]:
        try:
            spec = pull_from_hub(reference, data_dir=settings.data_dir, store=store,
                                 endpoint=hub_endpoint(settings.hub_url), name=as_name, console=console)
        except (PullError, CatalogError) as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        console.print(f"[green]{spec.id} ready[/green] ({spec.kind}, {spec.engine}) in {store.dir_for(spec)}")
    names = [n for n in names if not is_hub_reference(n)]
    catalog = _catalog(settings) if names else Catalog([])
    for name in names:
        try:
            spec = catalog.resolve(name)
        except UnknownModel:
            console.print(f"[red]unknown model {name!r}[/red]; `hearth models list` shows them")
            raise typer.Exit(2) from None
        if store.is_present(spec):
            continue
        if any(not f.sources for f in spec.files):
            console.print(f"[red]{spec.id} was imported and its files are gone[/red]; import it again")
            raise typer.Exit(1)
        try:
            store.pull(spec, console)
        except PullError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        console.print(f"[green]{spec.id} ready[/green] in {store.dir_for(spec)}")


def _database(*, bootstrap: bool = True):
    """The data directory's database, migrated; ``bootstrap`` makes the first keys if it is new.

    Read-only commands pass ``bootstrap=False``: listing keys must not create any.
    """
    from hearth.firstrun import initialize
    from hearth.store.db import Database, prepare_data_dir

    settings = Settings()
    prepare_data_dir(settings.data_dir)
    database = Database(settings.resolved_database_url)
    database.migrate()
    if bootstrap:
        initialize(database, settings.data_dir)
    return database


def _organization(database):
    """The Administration API's service over ``database``: the CLI changes keys through it, audited."""
    from hearth.accounting.ratelimits import ModelLimits, ProjectLimits
    from hearth.organization.service import OrganizationService

    settings = Settings()
    return OrganizationService(database, settings, ProjectLimits(database, ModelLimits()),
                               lambda: [spec.id for spec in _catalog(settings).models])


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli key",
    project: Annotated[str | None, typer.Option(help="Project id (default: the first active one).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="An organization admin key.")] = False,
    user: Annotated[str | None, typer.Option(help="The user who owns the key (default: the first owner); "
                                                   "an admin key of a reader can only read.")] = None,
) -> None:
    """Mint a key and print its secret once."""
    from hearth.errors import APIError

    try:
        minted = _organization(_database()).create_key(name=name, project_id=project, admin=admin, user_id=user)
    except APIError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from None
    console.print(f"created {minted.record.id} ({minted.record.kind})")
    print(minted.secret)


@keys_app.command("list")
def keys_list() -> None:
    """Keys by id, kind, project and redacted value."""
    settings = Settings()
    if not settings.database_url and not settings.embedded_database.exists():
        console.print(f"no keys: {settings.data_dir} holds no database yet (`hearth serve` makes one)")
        return
    table = Table("id", "kind", "project", "owner", "name", "key", "revoked")
    for key in _organization(_database(bootstrap=False)).list_keys():
        table.add_row(key.id, key.kind, key.project_id or "-", key.service_account_id or key.user_id or "-",
                      key.name, key.redacted_value, "yes" if key.revoked_at else "")
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")]) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    from hearth.errors import APIError

    try:
        _organization(_database(bootstrap=False)).revoke_key(key_id)
    except APIError:
        console.print(f"[red]no active key {key_id!r}[/red]")
        raise typer.Exit(2) from None
    console.print(f"revoked {key_id}")


@invites_app.command("accept")
def invites_accept(
    token: Annotated[str, typer.Argument(help="The invite's token (hearth-invite-...), from its creation.")],
    name: Annotated[str | None, typer.Option(help="Your name as the organization shows it.")] = None,
) -> None:
    """Accept an invitation: you become a user of the organization with the invite's role and projects.

    The same is open over HTTP, without a key: POST /v1/organization/invites/accept {"token", "name"}.
    """
    from hearth.errors import APIError

    try:
        user = _organization(_database(bootstrap=False)).accept_invite(token, name)
    except APIError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from None
    console.print(f"welcome, {user.name}: you are {user.id} ({user.role})")


def main() -> None:
    app()
