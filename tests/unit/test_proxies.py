"""Which client a request's peer may name: the trusted-proxy walk of X-Forwarded-For."""

from __future__ import annotations

from ipaddress import ip_network

from control.auth.proxies import Origin, Proxies, address

BEHIND_INGRESS = Proxies([ip_network("10.0.0.0/8"), ip_network("::1/128")])


def test_with_no_trusted_proxy_the_client_is_always_the_peer() -> None:
    assert Proxies([]).origin("10.0.0.5", ["203.0.113.9"]) == Origin("10.0.0.5", "10.0.0.5")


def test_an_untrusted_peer_cannot_name_a_client() -> None:
    origin = BEHIND_INGRESS.origin("198.51.100.7", ["203.0.113.9"])
    assert origin == Origin("198.51.100.7", "198.51.100.7")


def test_the_client_is_the_rightmost_address_no_trusted_proxy_sits_behind() -> None:
    chain = ["203.0.113.9, 198.51.100.20", "10.1.2.3"]  # forged, client, inner proxy
    assert BEHIND_INGRESS.origin("10.0.0.5", chain) == Origin("198.51.100.20", "10.0.0.5")
    only_proxies = BEHIND_INGRESS.origin("10.0.0.5", ["10.9.9.9"])
    assert only_proxies == Origin("10.9.9.9", "10.0.0.5")
    assert BEHIND_INGRESS.origin("10.0.0.5", []) == Origin("10.0.0.5", "10.0.0.5")


def test_a_malformed_hop_ends_the_walk_at_the_proxy_that_passed_it_on() -> None:
    for junk in ("unknown", "evil.example", "", "1.2.3.4.5"):
        origin = BEHIND_INGRESS.origin("10.0.0.5", [f"203.0.113.9, {junk}"])
        assert origin == Origin("10.0.0.5", "10.0.0.5"), junk


def test_addresses_are_read_with_ports_brackets_and_ipv4_mapped_forms() -> None:
    assert str(address("[2001:db8::1]:4711")) == "2001:db8::1"
    assert str(address("203.0.113.9:8080")) == "203.0.113.9"
    assert str(address("::ffff:10.0.0.5")) == "10.0.0.5"
    assert address("2001:db8::1") is not None and address("for=1.2.3.4") is None
    assert BEHIND_INGRESS.origin("::1", ["[2001:db8::7]:443"]) == Origin("2001:db8::7", "::1")
