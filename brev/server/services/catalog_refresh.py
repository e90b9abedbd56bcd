"""Refresh the offer catalog from the providers' APIs, with an org's stored credentials.

Three steps, so that no database transaction stays open while a cloud answers:
`prepare` (in a short transaction: decrypt the org's configs; the route admits admins only),
`run` (no database: ask each provider, write `$BREV_HOME/catalog/<provider>.csv`, reload the
catalog) and `record` (in another short transaction: the audit event).

The catalog is the plane's, not the org's: every org sees the refreshed offers. With several
replicas, each keeps its own `$BREV_HOME/catalog`; refresh through each, or share the folder.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from brev import api
from brev.catalog.offers import load_catalog, reload_catalog, shipped_offers
from brev.catalog.refresh import REFRESHERS, RefreshResult, combine, write_offers
from brev.server.errors import Conflict
from brev.server.secrets import Secrets
from brev.server.services import events
from brev.server.services.provider_configs import configured, load_config
from brev.server.services.scope import OrgContext

log = logging.getLogger("brev.server")

UNEXPECTED = "the refresh failed unexpectedly; the server log has the details"
# One refresh at a time in this process: two would race to write the same files.
_running = threading.Lock()


@dataclass(frozen=True)
class RefreshJob:
    org_id: str
    actor_id: str
    configs: dict[str, dict[str, Any]]  # provider -> decrypted config, for those with a refresher


def prepare(session: Session, ctx: OrgContext, secrets: Secrets) -> RefreshJob:
    configs = {
        provider: load_config(session, ctx.org.id, provider, secrets)
        for provider in configured(session, ctx.org.id)
        if provider in REFRESHERS
    }
    return RefreshJob(org_id=ctx.org.id, actor_id=ctx.principal.user_id, configs=configs)


def run(job: RefreshJob, overlay_dir: Path) -> list[api.CatalogRefresh]:
    """Refresh each provider of the job; write the overlays of those with a refreshed region."""
    if not job.configs:
        return []
    if not _running.acquire(blocking=False):
        raise Conflict("a catalog refresh is already running on this server; try again shortly")
    try:
        answers = []
        for provider, config in job.configs.items():
            try:
                result = REFRESHERS[provider](config, shipped_offers(provider))
            except Exception:  # a bug in one refresher must not cost the others their refresh
                log.exception("catalog refresh of %s failed", provider)
                result = RefreshResult(provider, [], [], error=UNEXPECTED)
            rows = None
            if result.regions:
                offers = combine(load_catalog().offers, result)
                path = overlay_dir / f"{provider}.csv"
                try:
                    write_offers(path, offers)
                except OSError as exc:
                    log.exception("catalog refresh: cannot write %s", path)
                    why = f"the server cannot write its catalog file ({exc.strerror})"
                    result = RefreshResult(provider, [], [], error=why)
                else:
                    reload_catalog()
                    rows = len(offers)
                    log.info(
                        "catalog refresh: %s, %d regions, %d skipped, %d offers",
                        *(provider, len(result.regions), len(result.skipped), rows),
                    )
            answers.append(_to_api(result, rows))
        return answers
    finally:
        _running.release()


def record(session: Session, job: RefreshJob, results: list[api.CatalogRefresh]) -> None:
    if not results:
        return
    events.record(
        session,
        org_id=job.org_id,
        actor_id=job.actor_id,
        action="catalog.refresh",
        object_type="catalog",
        object_name=",".join(r.provider for r in results),
        details={
            r.provider: {"rows": r.rows, "regions": len(r.regions), "skipped": len(r.skipped)}
            | ({"error": r.error} if r.error else {})
            for r in results
        },
    )


def _to_api(result: RefreshResult, rows: int | None) -> api.CatalogRefresh:
    if rows is None:  # nothing written: what the catalog has now
        rows = sum(1 for o in load_catalog().offers if o.provider == result.provider)
    return api.CatalogRefresh(
        provider=result.provider,
        rows=rows,
        regions=result.regions,
        skipped=[api.CatalogSkip(region=r, reason=why) for r, why in result.skipped],
        unpriced=result.unpriced,
        error=result.error,
    )
