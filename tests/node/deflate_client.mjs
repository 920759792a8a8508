// A `ws` (npm) client with permessage-deflate for tests/test_e2e_compression.py.
// Usage: node deflate_client.mjs WS_URL CHANNEL
// Prints one JSON line per event: {"upgrade": the response's Sec-WebSocket-Extensions},
// {"open": the extensions ws uses}, then each message received.
// Subscribes to CHANNEL, then sends a ~1 KB send_data (compressed: threshold 0), and
// exits 0 after the first push it receives; exits 1 on error or close before that.
import WebSocket from "ws";

const [url, channel] = process.argv.slice(2);
const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 } });
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const call = (id, method, params) => ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));

ws.on("upgrade", (res) => out({ upgrade: res.headers["sec-websocket-extensions"] ?? null }));
ws.on("open", () => {
  out({ open: ws.extensions });
  call(1, "subscribe", { channel });
});
ws.on("message", (data, isBinary) => {
  const msg = JSON.parse(data.toString());
  out({ message: msg, binary: isBinary });
  if (msg.id === 1) call(2, "send_data", { channel, data: { pad: "y".repeat(1000) } });
  if (msg.method === "message") ws.close(1000, "done");
});
ws.on("close", (code) => process.exit(code === 1000 ? 0 : 1));
ws.on("error", (err) => {
  out({ error: String(err) });
  process.exit(1);
});
