"""RocketWS settings: the defaults, spelled out.  Edit to change them.

Environment variables override these (ROCKETWS_ + the key: ROCKETWS_MAX_MESSAGE_SIZE, ...;
addresses ROCKETWS_WS_CONN=HOST:PORT and ROCKETWS_MS_CONN: see docs/configuration.md), and
command-line flags override both.  Values are validated once at start.
"""

# Browser-facing WebSocket endpoint.
WEBSOCKETS = {
    "HOST": "0.0.0.0",
    "PORT": 58000,
    "MAX_MESSAGE_SIZE": 64 * 1024,  # bytes per received message; larger: close 1009
    "MAX_OUTBOX_BYTES": 1024 * 1024,  # unsent bytes per connection; more: close 4008
    "MAX_CHANNELS_PER_CONNECTION": 128,  # then subscribe answers -32003
    "MAX_CONNECTIONS": 16000,  # open WebSockets per process; more: upgrade answered 503
    "ALLOWED_ORIGINS": ["*"],  # or ["https://example.com", ...]: other browser pages get 403
    "HANDSHAKE_TIMEOUT": 10.0,  # seconds to send the HTTP upgrade request
    "CLOSE_TIMEOUT": 5.0,  # seconds to flush and finish a closing handshake
    "SUBPROTOCOLS": ["jsonrpc", "rocketws"],  # Sec-WebSocket-Protocol names we agree to
    # Command rate limit per connection (token bucket): messages/s (0 = off), bucket size,
    # and refusals in a row (-32029) before the connection is closed with 4029.
    "RATE_LIMIT": 100.0,
    "RATE_BURST": 200,
    "RATE_REFUSALS": 20,
    "PING_INTERVAL": 25.0,  # seconds without a received frame before a ping; 0 = no pings
    "PONG_TIMEOUT": 10.0,  # seconds to answer it (a pong or any frame); then close 4009
    "WRITE_TIMEOUT": 10.0,  # seconds the socket may take nothing while frames wait; 0 = off
    "SEND_BUFFER": 0,  # bytes: cap on the kernel send buffer (SO_SNDBUF); 0 = autotuning
    "COMPRESSION": False,  # permessage-deflate (RFC 7692) with clients that offer it
    "WRITE_DELAY": 0.0,  # seconds a publication may wait to share a write (e.g. 0.005); 0 = at once
    "SERVE_CLIENT": True,  # GET /rocketws.js on the WebSocket port: the JavaScript client
}

# Backend-facing JSON-RPC over HTTP: loopback only unless you change it.
MESSAGES_SOURCE = {
    "HOST": "127.0.0.1",
    "PORT": 59999,
    "MAX_REQUEST_BODY": 1024 * 1024,  # bytes; larger: HTTP 413
    "IDLE_TIMEOUT": 60.0,  # seconds a keep-alive connection may wait for its next request
    "REQUEST_TIMEOUT": 30.0,  # seconds to send one whole request (head and body); then 408
    "REDIS": None,  # or "redis://127.0.0.1:6379/0?channel=rocketws:messages" (docs/scaling.md)
    "API_KEY": None,  # a secret: backends send it, else 401 (docs/security.md); `manage.py init`
    "METRICS": True,  # GET /metrics for Prometheus (docs/operations.md); False: 404
    "METRICS_PUBLIC": False,  # True: /metrics without the API key (when one is set)
    "ADMIN": True,  # GET /admin: the dashboard page (its data needs the API key; docs/admin.md)
}

# A channel "ns:room" is in namespace "ns"; a channel without ":" in the default one ("").
CHANNELS = {
    "MAX_NAME_LENGTH": 255,
    "ALLOW_UNKNOWN_NAMESPACES": True,  # False: subscribe to an undeclared x:room answers -32005
}

# Channel namespaces and their options (docs/security.md#namespace-options), e.g.
# [{"name": "news", "allow_send_data": False},            # clients only listen on news:*
#  {"name": "private", "allow_subscribe": "token"},       # a subscription token per channel
#  {"name": "team", "presence": True, "join_leave": True}] # presence, join/leave pushes
# (CHANNELS["NAMESPACES"] is the older place: use one of the two.)
NAMESPACES: list[dict[str, object]] = []

RPC = {
    "MAX_BATCH_SIZE": 1000,  # requests per batch; more: -32003
    "MAX_NESTING_DEPTH": 64,  # levels of arrays/objects per document (3-200); deeper: -32600
    "SPEC_EXAMPLE_METHODS": False,  # adds JSON-RPC spec section 7 methods (conformance tests)
}

# History, recovery and idempotent emits (docs/protocol.md#history-and-recovery); a
# namespace keeps history with "history_size" and "history_ttl" (both > 0).
HISTORY = {
    "HISTORY_LIMIT": 100,  # publications a `history` call without `limit` answers
    "HISTORY_MAX_LIMIT": 1000,  # the largest `limit` accepted; more: -32602
    "RECOVERY_MAX_PUBLICATIONS": 300,  # a recovery needing more answers recovered: false
    "HISTORY_MEMORY_MAX_BYTES": 64 * 1024 * 1024,  # all history of the memory broker together
    "HISTORY_META_TTL": 86400.0,  # seconds a channel's epoch/offset outlive its last publication
    "IDEMPOTENCY_WINDOW": 300.0,  # seconds an emit's idempotency_key is remembered
    "IDEMPOTENCY_MAX_KEYS": 100000,  # keys the memory broker remembers (oldest dropped)
}

# Connection authentication (docs/security.md). Nothing set: anonymous mode, every
# connection is accepted at once. Keep secrets out of this file: use the environment
# (ROCKETWS_TOKEN_HMAC_SECRET).
AUTH = {
    "TOKEN_HMAC_SECRET": None,  # HS256/384/512 secret, >= 32 bytes
    "TOKEN_PUBLIC_KEY": None,  # path of a PEM public key (RS*, PS*, ES*, EdDSA)
    "TOKEN_JWKS_FILE": None,  # path of a JWKS file (keys chosen by kid)
    "TOKEN_AUDIENCE": None,  # when set, tokens need this aud
    "TOKEN_ISSUER": None,  # when set, tokens need this iss
    "TOKEN_REQUIRE_EXP": False,  # True: tokens without exp are refused
    "CONNECT_TIMEOUT": 10.0,  # seconds for a successful connect; then close 4010
    "REFRESH_GRACE": 25.0,  # seconds after exp for a refresh; then close 4011
    "CONNECT_PROXY_URL": None,  # e.g. "http://127.0.0.1:8000/rocketws/connect"
    "CONNECT_PROXY_HEADERS": ["Cookie", "Authorization"],  # forwarded from the upgrade
    "CONNECT_PROXY_TIMEOUT": 5.0,  # seconds for its answer; then -32014 and close 4012
    "MAX_CONNECTIONS_PER_USER": 0,  # per user and node, 0 = no limit; more: -32016, close 4013
}

# RPC, subscribe and publish proxies (docs/operations.md#proxies): clients call `rpc
# {method, params}` and RocketWS POSTs a JSON-RPC request to the application (or calls an
# in-process handler); namespaces with subscribe_proxy / publish_proxy ask the application.
PROXY: dict[str, object] = {
    "RPC_URL": None,  # catch-all for rpc, e.g. "http://127.0.0.1:8000/rocketws/rpc"
    "RPC": [],  # routes, first match wins: [{"pattern": "db.*", "url": "http://..."},
    #             {"pattern": "time.now", "handler": "myapp.rpc:now"}]
    "SUBSCRIBE_URL": None,  # asked before subscribe where a namespace has subscribe_proxy
    "PUBLISH_URL": None,  # asked before send_data where a namespace has publish_proxy
    "TIMEOUT": 5.0,  # seconds for an answer; then -32042
    "HEADERS": ["Cookie", "Authorization"],  # upgrade request headers forwarded with each call
    "STATIC_HEADERS": {},  # sent with each call, e.g. an API key: use ROCKETWS_PROXY_STATIC_HEADERS
    "MAX_IN_FLIGHT_PER_CONNECTION": 8,  # rpc calls waiting per connection; more: -32044
    "MAX_IN_FLIGHT": 1000,  # proxied calls waiting per process; more: -32044
    "MAX_RESPONSE_SIZE": 1048576,  # bytes of an answer; more: -32043
}

# TLS on both endpoints (docs/security.md#tls): set CERT and KEY (or ROCKETWS_TLS_CERT and
# ROCKETWS_TLS_KEY) to serve wss:// and https://; SIGHUP re-reads both files.
TLS = {
    "CERT": None,  # PEM: the certificate, then its intermediates
    "KEY": None,  # PEM: its private key (not encrypted)
    "WSS": True,  # False: the WebSocket endpoint stays ws:// (TLS ends at a proxy in front)
    "HTTPS": True,  # False: the MessagesSource stays http:// (backends on loopback)
}

SERVER = {
    "BROKER": "memory",  # or "redis://127.0.0.1:6379/0" to join nodes (docs/scaling.md)
    "SHUTDOWN_TIMEOUT": 5.0,  # seconds to close every connection on SIGTERM/SIGINT
    "LOG_LEVEL": None,  # None: as LOGGING says; or DEBUG/INFO/WARNING/ERROR
    "LOG_FORMAT": "plain",  # or "json": one JSON object per line (log shippers)
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        },
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
}
