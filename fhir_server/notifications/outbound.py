"""Outbound HTTP for REST-hook deliveries, kept from becoming a way into the operator's network.

A Subscription's owner chooses the endpoint, so every POST is checked where it will land:

- the URL must be `https` (plain `http` only with `subscription_allow_private_endpoints`), with
  a host and no user name or password;
- the host is resolved at every delivery, and every address it resolves to must be public:
  loopback, private, link-local, shared (CGNAT), multicast, reserved and unspecified addresses
  are refused, IPv4-mapped and 6to4/Teredo IPv6 addresses by the IPv4 address inside (all
  allowed with the setting), as are NAT64 addresses of such an IPv4 address;
- the request then goes to the address that was checked, never to a second lookup (which a
  rebinding DNS server could answer differently): the URL names the IP, the `Host` header and
  the TLS server name (SNI, and the certificate check) keep the hostname;
- redirects are not followed (a 3xx is a failed delivery), no proxy from the environment is
  used, each POST has one deadline for everything (DNS included), and no more than
  `subscription_response_bytes` of an answer are read.
"""

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> getaddrinfo's answer; the loop's by default, a fake one in tests.
Resolver = Callable[[str, int], Awaitable[list[tuple[Any, ...]]]]


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


class EndpointRefused(Exception):
    """The endpoint may not be called: its URL or the address its host resolves to.

    `public` is what the Subscription's owner may be told: whether a name resolves, and to
    which private address, is the operator's network, so that stays in the server's log."""

    def __init__(self, detail: str, public: str | None = None) -> None:
        super().__init__(detail)
        self.public = public or detail


UNREACHABLE = "its host does not resolve to public addresses only"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes  # at most the configured number of bytes


def checked_url(url: str, *, allow_private: bool) -> SplitResult:
    """The endpoint's parts, or EndpointRefused for a URL that may not be called."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise EndpointRefused(f"{url!r} is not a URL") from exc
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise EndpointRefused(f"the endpoint must be an https URL, not {parts.scheme or url!r}")
    if not parts.hostname:
        raise EndpointRefused(f"{url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise EndpointRefused("the endpoint may not carry a user name or password")
    return parts


def endpoint_problem(url: str, *, allow_private: bool) -> str | None:
    """What is wrong with an endpoint as written, before any DNS (None: nothing yet): its
    URL, or an address literal that is not public. Checked when a Subscription is written; a
    name is only resolved, and checked, when it is delivered to."""
    try:
        parts = checked_url(url, allow_private=allow_private)
        if not allow_private:
            address = ipaddress.ip_address(parts.hostname or "")
            if (why := refusal(address)) is not None:
                return f"{address} is {why}"
    except EndpointRefused as exc:
        return str(exc)
    except ValueError:
        pass  # a name, not an address
    return None


def refusal(address: IPAddress) -> str | None:
    """Why an address is not public (None: it is)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if address in _NAT64:  # a NAT64 gateway would connect to the IPv4 address inside
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address in _LOCAL_NAT64:
            return "a local-use NAT64 address"
        if inner is not None:
            return refusal(inner)
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if not address.is_global:  # private, shared (100.64/10), reserved, documentation ...
        return "a private or reserved address"
    return None


async def _system_resolver(host: str, port: int) -> list[tuple[Any, ...]]:
    loop = asyncio.get_running_loop()
    return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)


async def resolve(
    host: str, port: int, *, allow_private: bool, resolver: Resolver = _system_resolver
) -> IPAddress:
    """The address to connect to: every address the host resolves to must be allowed (a name
    that resolves to one public and one private address is refused), the first is used."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            answers = await resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise EndpointRefused(f"{host} cannot be resolved: {exc}", UNREACHABLE) from exc
        # The scope id of a link-local IPv6 answer ("fe80::1%eth0") is not part of the address.
        addresses = [ipaddress.ip_address(str(a[4][0]).split("%")[0]) for a in answers]
    if not addresses:
        raise EndpointRefused(f"{host} resolves to no address", UNREACHABLE)
    if not allow_private:
        for address in addresses:
            if (why := refusal(address)) is not None:
                raise EndpointRefused(f"{host} resolves to {address}, {why}", UNREACHABLE)
    return addresses[0]


def pinned_url(parts: SplitResult, address: IPAddress) -> str:
    """The URL with the checked address in place of the host (the port kept)."""
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()


# httpx logs every request's URL at INFO: an endpoint's query may hold its owner's token.
logging.getLogger("httpx").setLevel(logging.WARNING)


class Sender:
    """POSTs to checked endpoints. A connection is never kept for another request: one made
    to an address for one hostname must not carry a request for another."""

    def __init__(
        self,
        *,
        timeout: float,
        response_bytes: int,
        allow_private: bool,
        resolver: Resolver = _system_resolver,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.response_bytes = response_bytes
        self.allow_private = allow_private
        self._resolver = resolver
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: it would connect by name
            timeout=timeout,
            limits=httpx.Limits(max_keepalive_connections=0),
            transport=transport,
        )

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Answer:
        """POST `body`; the answer's status and its first bytes. EndpointRefused for an
        endpoint that may not be called, httpx.HTTPError or TimeoutError when it failed."""
        async with asyncio.timeout(self.timeout):
            parts = checked_url(url, allow_private=self.allow_private)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = await resolve(
                host, port, allow_private=self.allow_private, resolver=self._resolver
            )
            request = self._client.build_request(
                "POST",
                pinned_url(parts, address),
                headers=[("Host", parts.netloc.rpartition("@")[2]), *headers],
                content=body,
                extensions={"sni_hostname": host} if parts.scheme == "https" else {},
            )
            response = await self._client.send(request, stream=True)
            try:
                return Answer(response.status_code, await self._first_bytes(response))
            finally:
                await response.aclose()

    async def _first_bytes(self, response: httpx.Response) -> bytes:
        read = bytearray()
        if self.response_bytes == 0:
            return b""
        if response.is_stream_consumed:  # a transport that answered with the whole body
            return response.content[: self.response_bytes]
        async for chunk in response.aiter_raw():
            read += chunk
            if len(read) >= self.response_bytes:
                break
        return bytes(read[: self.response_bytes])

    async def close(self) -> None:
        await self._client.aclose()
