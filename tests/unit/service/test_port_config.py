"""CoAP and CoAPs on one port is refused at start: with ``--workers`` both listeners are bound
with SO_REUSEPORT, so the kernel would accept the second bind and split the port's datagrams
between the NoSec and the DTLS listener."""

from __future__ import annotations

import pytest

from keystore.config_error import ConfigError
from lwm2m_server.config import load_config


def test_coap_and_coaps_on_one_port_are_refused_with_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, overrides={"coap_port": 7000, "coaps_port": 7000, "workers": 2})
    assert caught.value.key == "coaps_port"
    assert "7000 is also coap_port" in caught.value.reason


def test_one_port_is_fine_when_only_one_listener_is_open() -> None:
    dtls_only = load_config(
        env={"LWM2M_SERVER_SECURITY_MODES": "psk"},
        overrides={"coap_port": 7000, "coaps_port": 7000},
    )
    assert dtls_only.coaps_port == 7000
    nosec_only = load_config(
        env={"LWM2M_SERVER_SECURITY_MODES": "nosec"},
        overrides={"coap_port": 7000, "coaps_port": 7000},
    )
    assert nosec_only.coap_port == 7000


def test_port_zero_twice_means_two_free_ports() -> None:
    config = load_config(env={}, overrides={"coap_port": 0, "coaps_port": 0})
    assert config.coap_port == config.coaps_port == 0
