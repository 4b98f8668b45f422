"""The HTTP server's settings of issue 20 (trusted proxies, deadlines, connections), and the
subkeys the instance key derives (the website's CSRF key)."""

from __future__ import annotations

import pytest

from orchestra.errors import InvalidInput
from orchestra.services.keyring import Keyring, new_key
from orchestra.settings import load_settings


def test_no_proxy_is_trusted_by_default_and_the_deadlines_have_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.trusted_proxies == ()
    assert (settings.header_timeout, settings.keep_alive_timeout) == (10.0, 5.0)
    assert settings.max_connections == 10_000


def test_trusted_proxies_are_addresses_or_networks_from_the_option_or_the_environment() -> None:
    environ = {
        "ORCHESTRA_TRUSTED_PROXIES": " 10.0.0.5, 10.1.0.0/16,::1 ,",
        "ORCHESTRA_HEADER_TIMEOUT": "2.5",
        "ORCHESTRA_KEEP_ALIVE_TIMEOUT": "30",
        "ORCHESTRA_MAX_CONNECTIONS": "500",
    }
    settings = load_settings(environ=environ)
    assert settings.trusted_proxies == ("10.0.0.5/32", "10.1.0.0/16", "::1/128")
    assert (settings.header_timeout, settings.keep_alive_timeout) == (2.5, 30.0)
    assert settings.max_connections == 500
    given = load_settings({"trusted_proxies": "192.0.2.1"}, environ=environ)
    assert given.trusted_proxies == ("192.0.2.1/32",)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ORCHESTRA_TRUSTED_PROXIES": "*"}, "ORCHESTRA_TRUSTED_PROXIES: '\\*' is not an IP"),
        ({"ORCHESTRA_TRUSTED_PROXIES": "proxy.local"}, "not an IP address or network"),
        ({"ORCHESTRA_HEADER_TIMEOUT": "0"}, "ORCHESTRA_HEADER_TIMEOUT must be a positive"),
        ({"ORCHESTRA_KEEP_ALIVE_TIMEOUT": "soon"}, "ORCHESTRA_KEEP_ALIVE_TIMEOUT must be a"),
        ({"ORCHESTRA_MAX_CONNECTIONS": "-3"}, "ORCHESTRA_MAX_CONNECTIONS must be a positive"),
    ],
)
def test_bad_http_settings_are_refused_with_their_name(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_settings(environ=environ)
    with pytest.raises(InvalidInput, match="--trusted-proxies: 'x' is not"):
        load_settings({"trusted_proxies": "x"}, environ={})


def test_derived_keys_are_per_purpose_shared_by_equal_rings_and_follow_the_current_key() -> None:
    key, other = new_key(), new_key()
    ring = Keyring([key, other])
    assert len(ring.derive("website csrf")) == 32
    assert ring.derive("website csrf") == Keyring([key]).derive("website csrf")  # every server
    assert ring.derive("website csrf") != ring.derive("sso")
    assert key not in (ring.derive("website csrf"), ring.derive(""))
    assert Keyring([other, key]).derive("website csrf") != ring.derive("website csrf")
