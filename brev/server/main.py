"""`brev server`: migrate, bootstrap on first start, then serve HTTP."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys

from sqlalchemy.exc import OperationalError

from brev.errors import BrevError
from brev.home import write_private_file
from brev.server.bootstrap import Bootstrapped, bootstrap_if_empty
from brev.server.db.engine import (
    DatabaseUnavailable,
    describe,
    make_engine,
    make_sessionmaker,
    transaction,
)
from brev.server.db.migrate import startup_lock, upgrade_to_head
from brev.server.settings import ServerSettings

log = logging.getLogger("brev.server")


def prepare_database(settings: ServerSettings) -> Bootstrapped | None:
    """Bring the database to the newest schema; on an empty one, create the first admin."""
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = make_engine(settings.database_url)
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to the database {describe(settings.database_url)}: {reason}"
        ) from None
    try:
        # One lock over both steps: replicas starting together migrate once and make one admin.
        with startup_lock(engine) as connection:
            upgrade_to_head(connection)
            connection.commit()
            with transaction(make_sessionmaker(engine)) as session:
                created = bootstrap_if_empty(session, settings.admin_email)
                if created is not None:
                    # Before the commit: when the file cannot be written, no admin is created
                    # either, and the next start tries again. Never an admin without a token.
                    _save_admin_token(settings, created.admin_token)
        return created
    finally:
        engine.dispose()


def _save_admin_token(settings: ServerSettings, token: str) -> None:
    try:
        write_private_file(settings.admin_token_path, token + "\n")
    except OSError as exc:
        raise BrevError(
            f"cannot write the admin token to {settings.admin_token_path} ({exc.strerror}); "
            f"fix that path and start again"
        ) from None


def announce(settings: ServerSettings, created: Bootstrapped | None) -> None:
    """Tell the person starting the server how to log in, without putting a secret in a log.

    The admin token goes to the terminal only when stdout is one; under systemd, docker or
    CI, where stdout is a log, it stays in the 0600 file alone.
    """
    url = f"http://{settings.host}:{settings.port}"
    if created is not None:
        log.info("first start: created admin %s and org '%s'", created.admin_email, created.org)
        token_path = settings.admin_token_path
        if sys.stdout.isatty():
            print(f"\nAdmin token (shown once, also in {token_path}):\n\n  {created.admin_token}\n")
            print(f"Log in with:  brev login --url {url} --token {created.admin_token}\n")
        else:
            print(f"Admin token written to {token_path} (mode 0600). Log in with:")
            print(f'  brev login --url {url} --token "$(cat {token_path})"')
    print(f"brev control plane on {url}  (dashboard: {url}/, API: {url}/docs)", flush=True)


def serve(settings: ServerSettings) -> None:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from brev.server.app import create_app

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from brev.server import assignment_watch, fleet_watch

    created = prepare_database(settings)
    app = create_app(settings)
    watch = assignment_watch.of(app)
    pages = fleet_watch.of(app)

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # uvicorn waits for every open request before it stops: node agents' long-polls
            # would hold a restart for up to 30 s, the dashboard's streams for ever. Answered
            # now, they ask the next plane.
            watch.close()
            pages.close()
            await super().shutdown(sockets)

    announce(settings, created)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="info", access_log=True
    )
    server = Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # what uvicorn.run does around it
        server.run()
    if not server.started:  # the port is taken, or the app did not start: as uvicorn.run
        sys.exit(STARTUP_FAILURE)
