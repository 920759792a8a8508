// Connect with the `ws` package, offering the subprotocols given, and call JSON-RPC ping.
// Usage: node ping.mjs URL [SUBPROTOCOL ...]; prints one JSON line: what happened.
import WebSocket from "ws";

const [url, ...protocols] = process.argv.slice(2);
const ws = new WebSocket(url, protocols);
const done = (out) => {
  console.log(JSON.stringify(out));
  process.exit(0);
};
setTimeout(() => done({ error: "timeout" }), 10000);
ws.on("open", () => ws.send(JSON.stringify({ jsonrpc: "2.0", method: "ping", id: 1 })));
ws.on("message", (data) => {
  const reply = JSON.parse(data.toString());
  const extensions = Object.keys(ws.extensions ?? {});
  ws.close(1000);
  done({ reply, protocol: ws.protocol, extensions });
});
ws.on("error", (err) => done({ error: err.message }));
