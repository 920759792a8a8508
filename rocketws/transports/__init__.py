"""gevent adapters around the pure core: the WebSocket endpoint and the HTTP MessagesSource."""
