"""Bearer-token authentication as a grpc.aio server interceptor.

Every RPC must carry `authorization: Bearer <token>` metadata, except the standard health service:
load balancers and orchestrators probe health without credentials, and a health answer reveals nothing
but "up or not". Reflection is *not* exempt (it describes the API; grpcurl passes `-H 'authorization: ...'`).
The comparison is constant-time so the token cannot be guessed byte by byte from response timings.
`parse_bearer` and `token_matches` are shared with the /metrics endpoint (`metrics.py`), which takes the same token.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"


def parse_bearer(value: str) -> str | None:
    """The token in an `authorization` value of the form 'Bearer TOKEN' (None for any other scheme)."""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def token_matches(given: str | None, expected: bytes) -> bool:
    """Constant-time comparison, so the token cannot be guessed byte by byte from response timings."""
    return given is not None and hmac.compare_digest(given.encode(), expected)


def _bearer_token(metadata: object) -> str | None:
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key.lower() == "authorization":
            return parse_bearer(str(value))
    return None


def _denying(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that refuses with UNAUTHENTICATED without reading the request."""

    async def refuse(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without the right bearer token (UNAUTHENTICATED); health checks pass unauthenticated."""

    def __init__(self, token: str, exempt_prefixes: tuple[str, ...] = (HEALTH_PREFIX,),
                 on_reject: Callable[[str], None] | None = None):
        if not token:
            raise ValueError("an empty auth token would accept every caller")
        self._token = token.encode()
        self._exempt = exempt_prefixes
        self._on_reject = on_reject  # called with the full method name of each refused call (metrics)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if handler_call_details.method.startswith(self._exempt):
            return await continuation(handler_call_details)
        given = _bearer_token(handler_call_details.invocation_metadata)
        if token_matches(given, self._token):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: let gRPC answer UNIMPLEMENTED as usual
            return handler
        reason = "missing bearer token" if given is None else "invalid bearer token"
        if self._on_reject is not None:
            self._on_reject(handler_call_details.method)
        return _denying(handler, reason)
