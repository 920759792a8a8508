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
    "PING_INTERVAL": 25.0,  # seconds without a received frame before a ping; 0 = no pings
    "PONG_TIMEOUT": 10.0,  # seconds to answer it (a pong or any frame); then close 4009
    "WRITE_TIMEOUT": 10.0,  # seconds the socket may take nothing while frames wait; 0 = off
    "SEND_BUFFER": 0,  # bytes: cap on the kernel send buffer (SO_SNDBUF); 0 = autotuning
}

# Backend-facing JSON-RPC over HTTP: loopback only unless you change it.
MESSAGES_SOURCE = {
    "HOST": "127.0.0.1",
    "PORT": 59999,
    "MAX_REQUEST_BODY": 1024 * 1024,  # bytes; larger: HTTP 413
    "IDLE_TIMEOUT": 60.0,  # seconds a keep-alive connection may wait for its next request
    "REQUEST_TIMEOUT": 30.0,  # seconds to send one whole request (head and body); then 408
    "REDIS": None,  # or "redis://127.0.0.1:6379/0?channel=rocketws:messages" (docs/scaling.md)
}

# A channel "ns:room" is in namespace "ns"; a channel without ":" in the default one ("").
CHANNELS = {
    "MAX_NAME_LENGTH": 255,
    # e.g. [{"name": "news", "allow_send_data": False}]: clients only listen on news:*
    "NAMESPACES": [],
    "ALLOW_UNKNOWN_NAMESPACES": True,  # False: subscribe to an undeclared x:room answers -32005
}

RPC = {
    "MAX_BATCH_SIZE": 1000,  # requests per batch; more: -32003
    "MAX_NESTING_DEPTH": 64,  # levels of arrays/objects per document (3-200); deeper: -32600
    "SPEC_EXAMPLE_METHODS": False,  # adds JSON-RPC spec section 7 methods (conformance tests)
}

SERVER = {
    "BROKER": "memory",  # or "redis://127.0.0.1:6379/0" to join nodes (docs/scaling.md)
    "SHUTDOWN_TIMEOUT": 5.0,  # seconds to close every connection on SIGTERM/SIGINT
    "LOG_LEVEL": None,  # None: as LOGGING says; or DEBUG/INFO/WARNING/ERROR
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
