"""Provider credentials: checked when added, sealed at rest, never shown, admin-only."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from brev import api
from brev.client import BrevClient, Conflict, Forbidden, InvalidRequest, NotFound
from brev.server.db.engine import make_engine
from brev.server.secrets import Secrets, SecretsError
from tests.conftest import Plane
from tests.moto import MotoServer
from tests.postgres import free_port

SECRET = "wJalrXUtnFEMI-not-a-real-secret-KEY"


def _everything_in_the_database(plane: Plane) -> str:
    engine = make_engine(plane.settings.database_url)
    try:
        with engine.connect() as connection:
            rows = [
                connection.execute(text(f"SELECT * FROM {table}")).all()  # noqa: S608 (fixed names)
                for table in ("provider_configs", "events", "instances")
            ]
    finally:
        engine.dispose()
    return repr(rows)


def test_credentials_are_sealed_and_never_returned(
    plane: Plane, admin: BrevClient, moto_server: MotoServer
) -> None:
    config = {**moto_server.config(), "secret_access_key": SECRET}
    added = admin.add_provider("aws", config)
    assert added.identity.startswith("account 123456789012")
    assert SECRET not in added.model_dump_json()
    assert SECRET not in plane.http(plane.admin_token).get("/api/v1/orgs/default/providers").text
    assert SECRET not in _everything_in_the_database(plane)
    assert admin.events()[0].action == "provider.add"
    # ... and the plane can open them again
    secrets: Secrets = plane.app.state.secrets
    engine = make_engine(plane.settings.database_url)
    with engine.connect() as connection:
        sealed = connection.execute(text("SELECT encrypted_config FROM provider_configs")).scalar()
    engine.dispose()
    assert secrets.open(str(sealed))["secret_access_key"] == SECRET


def test_another_key_cannot_open_them(
    plane: Plane, admin: BrevClient, moto_server: MotoServer
) -> None:
    sealed = Secrets.for_home(plane.settings.home).seal({"secret_access_key": SECRET})
    other = Secrets(b"0" * 43 + b"=")
    with pytest.raises(SecretsError, match="cannot be decrypted") as error:
        other.open(sealed)
    assert SECRET not in str(error.value)


def test_a_member_may_not_add_or_remove(
    plane: Plane, admin: BrevClient, moto_server: MotoServer
) -> None:
    added = admin.add_member("carol@example.com")
    assert added.login_token is not None
    carol = plane.client(added.login_token, org="default")
    with pytest.raises(Forbidden, match="needs the admin role"):
        carol.add_provider("aws", moto_server.config())
    admin.add_provider("aws", moto_server.config())
    assert [p.provider for p in carol.providers()] == ["aws"]  # members may see who, not what
    with pytest.raises(Forbidden):
        carol.remove_provider("aws")


@pytest.mark.parametrize(
    ("provider", "config", "message"),
    [
        ("azure", {"x": "y"}, "unknown provider 'azure'"),
        ("aws", {"access_key_id": "AKIA"}, "AWS needs secret_access_key"),
        ("gcp", {}, "GCP needs project"),
    ],
)
def test_bad_configs_are_422(
    admin: BrevClient, provider: str, config: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        admin.add_provider(provider, config)
    assert admin.providers() == []


def test_credentials_the_provider_cannot_check_are_not_stored(admin: BrevClient) -> None:
    unreachable = {
        "access_key_id": "AKIA",
        "secret_access_key": SECRET,
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
    }
    with pytest.raises(InvalidRequest, match="AWS rejected these credentials") as error:
        admin.add_provider("aws", unreachable)
    assert SECRET not in error.value.message
    assert admin.providers() == []


def test_removal_waits_for_the_instances(
    plane: Plane, admin: BrevClient, moto_server: MotoServer
) -> None:
    moto_server.reset()
    admin.add_provider("aws", moto_server.config())
    name = admin.create_instance(api.InstanceCreate(gpu="a100:8", providers=["aws"])).name
    plane.settle()
    with pytest.raises(Conflict, match="1 instance\\(s\\) of org 'default' still use aws"):
        admin.remove_provider("aws")
    admin.delete_instance(name)
    plane.settle()
    admin.remove_provider("aws")
    assert admin.providers() == []
    with pytest.raises(NotFound):
        admin.remove_provider("aws")
