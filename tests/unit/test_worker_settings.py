"""What a worker advertises and which ports it takes: settings checked, defaults derived."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from callmeter_worker.supervisor.settings import WorkerSettings, route_address


def test_the_default_address_is_that_of_the_route_to_nats() -> None:
    assert route_address("nats://127.0.0.1:4222") == "127.0.0.1"
    # Only the first of several servers is asked about.
    assert route_address("nats://127.0.0.2:4222,nats://192.0.2.9:4222") == "127.0.0.1"
    settings = WorkerSettings(nats_url="nats://127.0.0.1:4299", advertise_address="")
    assert settings.address() == "127.0.0.1"


def test_a_given_address_wins() -> None:
    settings = WorkerSettings(nats_url="nats://127.0.0.1:4222", advertise_address="10.1.2.3")
    assert settings.address() == "10.1.2.3"


def test_a_name_is_not_an_address() -> None:
    with pytest.raises(ValidationError, match="advertise_address") as err:
        WorkerSettings(advertise_address="worker.example")
    assert "not an IP address" in str(err.value)
    with pytest.raises(ValidationError, match="bind_address"):
        WorkerSettings(bind_address="any")


def test_hosts_bind_the_advertised_address_unless_told_another() -> None:
    settings = WorkerSettings(nats_url="nats://127.0.0.1:4222", advertise_address="203.0.113.7")
    assert settings.bind() == "203.0.113.7"
    behind_nat = settings.model_copy(update={"bind_address": "10.0.0.5"})
    assert (behind_nat.bind(), behind_nat.address()) == ("10.0.0.5", "203.0.113.7")


@pytest.mark.parametrize("bad", ["20000", "30000-20000", "80-90", "20000-70000", "a-b"])
def test_media_ports_must_be_a_range(bad: str) -> None:
    with pytest.raises(ValidationError, match="media_ports"):
        WorkerSettings(media_ports=bad)


def test_media_ports_range() -> None:
    assert WorkerSettings(media_ports="20000-29999").media_port_range() == (20000, 29999)
