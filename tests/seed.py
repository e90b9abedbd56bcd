"""Rows that no API creates yet (instances arrive with the providers), written directly."""

from __future__ import annotations

from datetime import datetime

from fastapi.testclient import TestClient
from sqlalchemy import select

from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import Instance, Org, User


def add_instances(
    database_url: str,
    org: str,
    creator_email: str,
    names: list[str],
    created_at: datetime | None = None,
) -> None:
    """Running instances in `org`; `created_at` (default now) for a test comparing ages printed
    seconds apart."""
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            org_id = session.scalars(select(Org.id).where(Org.name == org)).one()
            user_id = session.scalars(select(User.id).where(User.email == creator_email)).one()
            session.add_all(
                Instance(
                    org_id=org_id,
                    name=name,
                    created_by_id=user_id,
                    status="running",
                    health="healthy",
                    gpu_spec="A100:8",
                    gpu_model="A100-80GB",
                    gpu_count=8,
                    provider="aws",
                    region="us-east-1",
                    instance_type="p4de.24xlarge",
                    price_per_hour=40.97,
                    **({"created_at": created_at} if created_at is not None else {}),
                )
                for name in names
            )
    finally:
        engine.dispose()


def agent_token(http: TestClient, name: str, org: str = "default") -> str:
    """An agent token for the instance `name`, taken as its admin would (`http` carries the
    admin's token): what a test's fake agent reports with."""
    token: str = http.post(f"/api/v1/orgs/{org}/instances/{name}/agent-token").json()["token"]
    return token
