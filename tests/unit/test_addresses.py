"""AMQP_URL with the several addresses of a RabbitMQ cluster (taskfleet.core.addresses)."""

import pytest

from taskfleet.core.addresses import amqp_addresses
from taskfleet.core.errors import ConfigError
from taskfleet.core.settings import Settings
from taskfleet.store.pool import database_name, with_database


def test_one_address_is_itself() -> None:
    assert amqp_addresses("amqp://guest:guest@127.0.0.1:5672/") == [
        "amqp://guest:guest@127.0.0.1:5672/"
    ]


def test_full_urls_separated_by_commas() -> None:
    assert amqp_addresses("amqp://u:p@a:5672/v, amqps://u:p@b:5671/v") == [
        "amqp://u:p@a:5672/v",
        "amqps://u:p@b:5671/v",
    ]


def test_hosts_of_one_url_share_its_credentials_vhost_and_query() -> None:
    assert amqp_addresses("amqp://u:p@a,b:5673,c/vh?heartbeat=5") == [
        "amqp://u:p@a/vh?heartbeat=5",
        "amqp://u:p@b:5673/vh?heartbeat=5",
        "amqp://u:p@c/vh?heartbeat=5",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "http://u:hunter2@a/",
        "amqp://u:hunter2@/",
        "amqp://u:hunter2@a,,b/",
        "amqp://u:hunter2@a:port/",
        "amqp://u:hunter2@a/,b:5672",
    ],
)
def test_a_bad_address_is_refused_without_its_password(text: str) -> None:
    with pytest.raises(ValueError, match="AMQP_URL") as caught:
        amqp_addresses(text)
    assert "hunter2" not in str(caught.value)


def test_settings_refuse_a_bad_amqp_url_in_one_line_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load(AMQP_URL="amqp://u:hunter2@a:5672/,nowhere")
    message = str(caught.value)
    assert message.startswith("AMQP_URL:")
    assert "\n" not in message
    assert "hunter2" not in message


def test_settings_list_the_nodes() -> None:
    settings = Settings.load(AMQP_URL="amqp://g:g@n1,n2:5682/")
    assert settings.amqp_urls == ["amqp://g:g@n1/", "amqp://g:g@n2:5682/"]


def test_a_database_url_with_a_standby_keeps_both_hosts_and_its_options() -> None:
    dsn = "postgresql://u:p@db-a:5432,db-b:5433/taskfleet?target_session_attrs=read-write"
    assert database_name(dsn) == "taskfleet"
    assert with_database(dsn, "postgres") == (
        "postgresql://u:p@db-a:5432,db-b:5433/postgres?target_session_attrs=read-write"
    )
