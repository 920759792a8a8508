// A TCP relay the test controls (as tests/relay.py): cut() resets both sides of every
// relayed connection and refuses new ones until restore().
import net from "node:net";

export class Relay {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.up = true;
    this.pairs = new Set();
    this.server = net.createServer((client) => this._relay(client));
  }

  listen() {
    return new Promise((resolve) => {
      this.server.listen(0, "127.0.0.1", () => {
        this.port = this.server.address().port;
        this.url = `ws://127.0.0.1:${this.port}/`;
        resolve(this);
      });
    });
  }

  _relay(client) {
    if (!this.up) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.targetPort, "127.0.0.1");
    const pair = [client, upstream];
    this.pairs.add(pair);
    for (const sock of pair) {
      sock.on("error", () => {});
      sock.on("close", () => this.pairs.delete(pair));
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  cut() {
    this.up = false;
    for (const pair of this.pairs) for (const sock of pair) sock.resetAndDestroy();
    this.pairs.clear();
  }

  restore() {
    this.up = true;
  }

  close() {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
