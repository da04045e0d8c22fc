"""The REST-hook sender does not become a way into the operator's network: only https, only
public addresses (checked after DNS, for every address a name has, IPv6 and IPv4-mapped
included), the request sent to the address that was checked, no redirects followed, and no
more of an answer read than the limit."""

import ipaddress
import socket
from typing import Any

import httpx
import pytest

from fhir_server.notifications.outbound import (
    EndpointRefused,
    Sender,
    checked_url,
    refusal,
    resolve,
)

from .receiver import receiving


def answers(*addresses: str):
    """A resolver that gives these addresses for every name."""

    async def resolver(host: str, port: int) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolver


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.5",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared (CGNAT)
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1 (reserved)
    ],
)
def test_a_non_public_address_is_refused(address: str):
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_a_public_address_is_allowed(address: str):
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # plain http
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "https:///no-host",
        "https://user:pw@hooks.example.com/x",
        "https://hooks.example.com:notaport/x",
        "hooks.example.com/x",
    ],
)
def test_an_endpoint_that_is_not_a_plain_https_url_is_refused(url: str):
    with pytest.raises(EndpointRefused):
        checked_url(url, allow_private=False)


def test_plain_http_is_allowed_only_with_the_setting():
    assert checked_url("http://hooks.example.com/x", allow_private=True).hostname == (
        "hooks.example.com"
    )


async def test_a_name_that_resolves_to_a_private_address_is_refused():
    with pytest.raises(EndpointRefused, match=r"10\.1\.2\.3"):
        await resolve("hooks.example.com", 443, allow_private=False, resolver=answers("10.1.2.3"))


async def test_a_name_with_one_private_address_among_public_ones_is_refused():
    resolver = answers("93.184.215.14", "::ffff:127.0.0.1")
    with pytest.raises(EndpointRefused, match="loopback"):
        await resolve("hooks.example.com", 443, allow_private=False, resolver=resolver)


async def test_localhost_is_refused_by_its_real_resolution():
    with pytest.raises(EndpointRefused, match="loopback"):
        await resolve("localhost", 443, allow_private=False)


@pytest.mark.parametrize("literal", ["127.0.0.1", "::1", "::ffff:7f00:1"])
async def test_an_address_literal_is_checked_without_dns(literal: str):
    with pytest.raises(EndpointRefused):
        await resolve(literal, 443, allow_private=False, resolver=answers("93.184.215.14"))


async def test_a_name_that_cannot_be_resolved_is_refused():
    async def failing(host: str, port: int) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(EndpointRefused, match="cannot be resolved"):
        await resolve("nowhere.invalid", 443, allow_private=False, resolver=failing)


async def test_the_request_goes_to_the_checked_address_with_the_hostname_kept():
    """A second lookup could give another address (DNS rebinding): there is none."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    calls = []

    async def once(host: str, port: int) -> list[tuple[Any, ...]]:
        calls.append(host)
        return await answers("93.184.215.14")(host, port)

    sender = Sender(
        timeout=5,
        response_bytes=100,
        allow_private=False,
        resolver=once,
        transport=httpx.MockTransport(handler),
    )
    answer = await sender.post("https://hooks.example.com:8443/in?x=1", [("A", "b")], b"{}")
    await sender.close()
    assert answer.status == 204
    assert calls == ["hooks.example.com"]
    assert str(seen[0].url) == "https://93.184.215.14:8443/in?x=1"
    assert seen[0].headers["host"] == "hooks.example.com:8443"
    assert seen[0].extensions["sni_hostname"] == "hooks.example.com"
    assert seen[0].headers["a"] == "b"


async def test_a_private_endpoint_is_refused_before_any_request():
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be made")

    sender = Sender(
        timeout=5,
        response_bytes=100,
        allow_private=False,
        resolver=answers("192.168.0.10"),
        transport=httpx.MockTransport(handler),
    )
    with pytest.raises(EndpointRefused):
        await sender.post("https://router.example.com/", [], b"")
    await sender.close()


async def test_a_redirect_is_not_followed():
    with receiving() as target, receiving() as redirecting:
        redirecting.status = 307
        redirecting.location = target.url
        sender = Sender(timeout=5, response_bytes=100, allow_private=True)
        answer = await sender.post(redirecting.url, [], b"{}")
        await sender.close()
        assert answer.status == 307
        assert len(redirecting.requests) == 1
        assert target.requests == []


async def test_no_more_of_an_answer_is_read_than_the_limit():
    with receiving() as endpoint:
        endpoint.answer = b"x" * 100_000
        sender = Sender(timeout=5, response_bytes=10, allow_private=True)
        answer = await sender.post(endpoint.url, [], b"{}")
        await sender.close()
        assert (answer.status, answer.body) == (200, b"x" * 10)
