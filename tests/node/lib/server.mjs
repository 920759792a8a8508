// A real `manage.py runserver` for the rocketws.js tests: 127.0.0.1, ephemeral ports.
import { spawn, execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const PYTHON =
  process.env.ROCKETWS_PYTHON ?? (existsSync(join(ROOT, ".venv/bin/python")) ? join(ROOT, ".venv/bin/python") : "python3");
export const SECRET = "rocketws-js-tests-hmac-secret-0123456789abcdef";

const LISTEN = /(websocket|messages source) listening on (\S+)/;

/** `manage.py token --user USER --ttl S`, signed with SECRET. */
export function token(user, ttl = 3600, secret = SECRET) {
  return execFileSync(PYTHON, [join(ROOT, "manage.py"), "token", `--user=${user}`, `--ttl=${ttl}`], {
    cwd: ROOT,
    env: { ...process.env, ROCKETWS_TOKEN_HMAC_SECRET: secret },
    encoding: "utf8",
  }).trim();
}

/** An HS256 JWT of `claims` made here (for tokens `manage.py token` will not make, such
 *  as one that expired a minute ago). */
export function signedToken(claims, secret = SECRET) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

export class Server {
  /** `env`: extra ROCKETWS_* variables; `wsPort`: a fixed WebSocket port (restarts). */
  constructor(env = {}, { wsPort = 0 } = {}) {
    this.env = env;
    this.wsPort = wsPort;
    this.lines = [];
    this.proc = null;
  }

  async start(timeout = 20000) {
    this.urls = {};
    this.lines = [];
    const args = [join(ROOT, "manage.py"), "runserver", `--ws-conn=127.0.0.1:${this.wsPort}`, "--ms-conn=127.0.0.1:0"];
    const proc = (this.proc = spawn(PYTHON, args, {
      cwd: ROOT,
      env: { ...process.env, PYTHONUNBUFFERED: "1", ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    }));
    this.exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve(code ?? signal)));
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start:\n${this.log()}`)), timeout);
      let buffer = "";
      const onData = (chunk) => {
        buffer += chunk;
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl + 1);
          buffer = buffer.slice(nl + 1);
          this.lines.push(line);
          const m = LISTEN.exec(line);
          if (m) this.urls[m[1]] = m[2];
          if (this.urls.websocket && this.urls["messages source"]) {
            clearTimeout(timer);
            resolve();
          }
        }
      };
      proc.stdout.setEncoding("utf8").on("data", onData);
      proc.stderr.setEncoding("utf8").on("data", onData);
      proc.once("exit", () => reject(new Error(`server exited:\n${this.log()}`)));
    });
    this.wsPort = Number(new URL(this.wsUrl).port);
    return this;
  }

  get wsUrl() {
    return this.urls.websocket;
  }

  get msUrl() {
    return this.urls["messages source"];
  }

  log() {
    return this.lines.join("");
  }

  /** A backend method on the MessagesSource; the whole JSON-RPC response. */
  async call(method, params) {
    const body = { jsonrpc: "2.0", method, id: 1 };
    if (params !== undefined) body.params = params;
    const resp = await fetch(this.msUrl, { method: "POST", body: JSON.stringify(body) });
    return resp.json();
  }

  async result(method, params) {
    const answer = await this.call(method, params);
    if (!("result" in answer)) throw new Error(`${method}: ${JSON.stringify(answer)}`);
    return answer.result;
  }

  signal(name) {
    this.proc.kill(name);
  }

  /** SIGTERM and wait; fails when the log has a traceback. */
  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill("SIGTERM");
      await this.exited;
    }
    this.assertNoTraceback();
  }

  assertNoTraceback() {
    if (this.log().includes("Traceback (most recent call last)")) {
      throw new Error(`traceback in the server log:\n${this.log()}`);
    }
  }
}

/** Poll `predicate` until truthy (returned) or fail after `timeout` ms. */
export async function waitUntil(predicate, timeout = 10000, what = "condition") {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves with the first `event` of `emitter` whose argument passes `filter`. */
export function nextEvent(emitter, event, { filter = () => true, timeout = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} event within ${timeout} ms`));
    }, timeout);
    const off = emitter.on(event, (arg) => {
      if (!filter(arg)) return;
      off();
      clearTimeout(timer);
      resolve(arg);
    });
  });
}

/** Timers the test moves by hand; `now()` is the fake time in ms. */
export class FakeClock {
  constructor() {
    this.time = 0;
    this.timers = new Map();
    this.nextId = 1;
  }

  now = () => this.time;

  setTimeout = (fn, ms) => {
    const id = this.nextId++;
    this.timers.set(id, { fn, due: this.time + Math.max(0, ms), ms });
    return id;
  };

  clearTimeout = (id) => {
    this.timers.delete(id);
  };

  /** Move the time by `ms`, running every timer due on the way, in order. */
  advance(ms) {
    const end = this.time + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of this.timers) if (t.due <= end && (next === null || t.due < next[1].due)) next = [id, t];
      if (next === null) break;
      this.timers.delete(next[0]);
      this.time = next[1].due;
      next[1].fn();
    }
    this.time = end;
  }
}
