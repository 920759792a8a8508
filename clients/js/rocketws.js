// rocketws.js: the RocketWS client for browsers and Node.js (one ES module, no dependencies).
//
// JSON-RPC 2.0 over one WebSocket (docs/protocol.md): calls and batches, subscriptions that
// survive reconnects (resubscribed, recovered from their last offset and epoch where the
// channel has history), connection tokens with refresh, liveness, and reconnect with
// exponential backoff and full jitter for the close codes that allow it.
// API: docs/client-js.md.  Licence: MIT.

export const VERSION = "0.1.0";

/** An error answer from the server: JSON-RPC `code`, `message` and `data`. */
export class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = "RpcError";
    this.code = code;
    this.data = data;
  }
}

/** No answer within the call's timeout (the request may still have been served). */
export class TimeoutError extends Error {
  constructor(message = "timed out") {
    super(message);
    this.name = "TimeoutError";
  }
}

/** The connection closed before the answer came (the request may have been served). */
export class DisconnectedError extends Error {
  constructor(message = "disconnected", code = 1006, reason = "") {
    super(message);
    this.name = "DisconnectedError";
    this.code = code;
    this.reason = reason;
  }
}

/** JSON-RPC codes the client acts on (rocketws/core/codes.py has them all). */
export const Codes = Object.freeze({
  INVALID_TOKEN: -32011,
  TOKEN_EXPIRED: -32012,
  CONNECT_REFUSED: -32013,
  AUTH_UNAVAILABLE: -32014,
  BROKER_UNAVAILABLE: -32002,
  TOO_MANY_REQUESTS: -32029,
});

// Close codes after which reconnecting cannot help (rocketws/core/disconnect.py RFC_RECONNECT).
const RFC_NO_RECONNECT = new Set([1000, 1002, 1003, 1007, 1008, 1009]);
// Subscribe errors worth retrying after a delay; any other error ends the subscription.
const TEMPORARY = new Set([Codes.BROKER_UNAVAILABLE, Codes.TOO_MANY_REQUESTS, -32603]);

/**
 * Whether a client may reconnect after close `code` (the rule of docs/protocol.md):
 * 4000-4499 yes, 4500-4999 no, RFC 6455 codes by the protocol's table, 1006 (lost) yes.
 */
export function reconnectAllowed(code) {
  if (code >= 4500 && code <= 4999) return false;
  if (code >= 4000 && code <= 4499) return true;
  return !RFC_NO_RECONNECT.has(code);
}

/**
 * The delay before reconnect attempt `attempt` (0 first): full jitter over an exponential
 * ceiling, `random() * min(max, min * 2 ** attempt)` milliseconds.
 */
export function backoff(attempt, { minDelay = 500, maxDelay = 20000, random = Math.random } = {}) {
  const ceiling = Math.min(maxDelay, minDelay * 2 ** Math.min(attempt, 31));
  return Math.floor(random() * ceiling);
}

/** A minimal event emitter: `on` returns a function that removes the handler. */
class Emitter {
  constructor() {
    this._handlers = new Map();
  }

  on(event, handler) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
    return () => this.off(event, handler);
  }

  once(event, handler) {
    const off = this.on(event, (...args) => {
      off();
      handler(...args);
    });
    return off;
  }

  off(event, handler) {
    this._handlers.get(event)?.delete(handler);
  }

  _emit(event, ...args) {
    const handlers = this._handlers.get(event);
    if (!handlers) return;
    for (const handler of [...handlers]) {
      try {
        handler(...args);
      } catch (err) {
        // An application handler's bug must not break the client's own state.
        if (event !== "error") this._emit("error", { type: "handler", event, error: err });
        else console.error(err); // eslint-disable-line no-console
      }
    }
  }
}

/** One channel subscription: states unsubscribed -> subscribing -> subscribed. */
export class Subscription extends Emitter {
  constructor(client, channel, options = {}) {
    super();
    this.client = client;
    this.channel = channel;
    this.state = "unsubscribed";
    this.recover = options.recover !== false;
    this.token = options.token;
    this.getToken = options.getToken;
    this.offset = options.since?.offset ?? null;
    this.epoch = options.since?.epoch ?? null;
    this._wanted = false;
    this._buffer = null; // pushes that arrive while subscribing
    this._attempt = 0;
    this._retry = null;
    this._generation = 0;
    for (const [name, event] of [
      ["onMessage", "message"],
      ["onJoin", "join"],
      ["onLeave", "leave"],
      ["onSubscribed", "subscribed"],
      ["onUnsubscribed", "unsubscribed"],
      ["onError", "error"],
      ["onState", "state"],
    ]) {
      if (typeof options[name] === "function") this.on(event, options[name]);
    }
  }

  /** Subscribe (again, after `unsubscribe`); the client subscribes whenever it connects. */
  subscribe() {
    if (this._wanted) return;
    this._wanted = true;
    this._attempt = 0;
    if (this.client.state === "connected") this._send();
  }

  /** Unsubscribe; the subscription may be subscribed again with `subscribe()`. */
  unsubscribe() {
    if (!this._wanted) return;
    this._wanted = false;
    this._cancelRetry();
    const wasOn = this.state !== "unsubscribed";
    this._setState("unsubscribed", { reason: "unsubscribe called" });
    if (wasOn && this.client.state === "connected") {
      this.client.call("unsubscribe", { channel: this.channel }).catch(() => {});
    }
  }

  /** Resolves when subscribed; rejects if the subscription ends first. */
  ready(timeout) {
    if (this.state === "subscribed") return Promise.resolve(this);
    return new Promise((resolve, reject) => {
      let timer = null;
      const offs = [];
      const done = (fn, value) => {
        offs.forEach((off) => off());
        if (timer !== null) this.client._timers.clearTimeout(timer);
        fn(value);
      };
      offs.push(this.on("subscribed", () => done(resolve, this)));
      offs.push(
        this.on("unsubscribed", (ctx) => {
          if (!this._wanted) done(reject, ctx.error ?? new Error(`unsubscribed from ${this.channel}`));
        }),
      );
      if (timeout != null) {
        timer = this.client._timers.setTimeout(
          () => done(reject, new TimeoutError(`not subscribed to ${this.channel} in ${timeout} ms`)),
          timeout,
        );
      }
    });
  }

  /** `send_data` to the other subscribers of this channel. */
  publish(data) {
    return this.client.sendData(this.channel, data);
  }

  presence() {
    return this.client.presence(this.channel);
  }

  presenceStats() {
    return this.client.presenceStats(this.channel);
  }

  history(options) {
    return this.client.history(this.channel, options);
  }

  _setState(state, context = {}) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous, ...context });
    if (state === "unsubscribed") this._emit("unsubscribed", context);
  }

  _cancelRetry() {
    if (this._retry !== null) {
      this.client._timers.clearTimeout(this._retry);
      this._retry = null;
    }
  }

  // A backend unsubscribed this connection: the subscription ends (not resubscribed).
  _removedByServer() {
    this._wanted = false;
    this._cancelRetry();
    this._generation++;
    this._buffer = null;
    this._setState("unsubscribed", { reason: "unsubscribed by the server" });
  }

  // The connection went away: subscribe again once it is back.
  _connectionLost() {
    this._cancelRetry();
    this._buffer = null;
    if (this.state === "subscribed" || this.state === "subscribing") {
      this.state = "subscribing";
      this._emit("state", { state: "subscribing", previous: "subscribed", reason: "connection lost" });
    }
  }

  async _send() {
    if (!this._wanted || this.client.state !== "connected") return;
    const generation = ++this._generation;
    this._cancelRetry();
    this._setState("subscribing");
    this._buffer = [];
    const params = { channel: this.channel };
    const wasRecovering = this.recover && this.offset !== null && this.epoch !== null;
    if (wasRecovering) params.recover = { offset: this.offset, epoch: this.epoch };
    let result;
    try {
      if (this.getToken) params.token = await this.getToken(this.channel);
      else if (this.token) params.token = this.token;
      result = await this.client.call("subscribe", params);
    } catch (err) {
      if (generation !== this._generation || !this._wanted) return;
      this._failed(err);
      return;
    }
    if (generation !== this._generation || !this._wanted) return;
    this._attempt = 0;
    const buffered = this._buffer ?? [];
    this._buffer = null;
    const context = { wasRecovering, recovered: false, recoveredCount: 0 };
    if (result && typeof result === "object" && "epoch" in result) {
      const epochChanged = this.epoch !== null && result.epoch !== this.epoch;
      context.recovered = Boolean(result.recovered);
      context.epochChanged = epochChanged;
      if (context.recovered) {
        for (const pub of result.publications ?? []) {
          if (this._deliver({ channel: this.channel, ...pub })) context.recoveredCount += 1;
        }
      }
      // The stream's position now: the top offset (after a failed recovery too, so the
      // next recovery starts here; the application reloads what it missed).
      if (this.offset === null || epochChanged || !context.recovered || result.offset > this.offset) {
        this.offset = result.offset ?? this.offset;
      }
      this.epoch = result.epoch ?? this.epoch;
    }
    this.state = "subscribed";
    this._emit("state", { state: "subscribed", previous: "subscribing", ...context });
    this._emit("subscribed", context);
    for (const push of buffered) this._deliver(push);
  }

  _failed(err) {
    const temporary = err instanceof TimeoutError || err instanceof DisconnectedError || TEMPORARY.has(err?.code);
    if (err instanceof DisconnectedError) return; // the connection's reconnect resubscribes
    this._emit("error", { type: "subscribe", error: err });
    if (temporary) {
      const delay = backoff(this._attempt++, this.client._backoffOptions());
      this._retry = this.client._timers.setTimeout(() => {
        this._retry = null;
        this._send();
      }, delay);
      return;
    }
    this._wanted = false;
    this._setState("unsubscribed", { reason: err.message, error: err });
  }

  // A `message` push for this channel; false when it was a duplicate or not wanted.
  _deliver(params) {
    if (this._buffer !== null) {
      this._buffer.push(params);
      return false;
    }
    if (this.state !== "subscribed" && this.state !== "subscribing") return false;
    const { offset, epoch } = params;
    if (typeof offset === "number") {
      if (epoch !== undefined && this.epoch !== null && epoch !== this.epoch) {
        // A new epoch: the stream was reset; its offsets start again.
        this.epoch = epoch;
        this.offset = offset;
      } else if (this.offset !== null && offset <= this.offset) {
        return false; // seen already (de-duplication by offset)
      } else {
        this.offset = offset;
        if (epoch !== undefined) this.epoch = epoch;
      }
    }
    this._emit("message", params);
    return true;
  }
}

const DEFAULTS = {
  name: "rocketws.js",
  version: VERSION,
  timeout: 10000, // ms: a call's answer, the connect handshake
  minReconnectDelay: 500,
  maxReconnectDelay: 20000,
  pingInterval: null, // ms; null: the server's ping_interval from connect, else 25 s
  pongTimeout: 10000, // ms of silence after our ping before the connection is dropped
  refreshBefore: 10000, // ms before the token's expiry to refresh it
  maxRefreshDelay: 30000, // ms: ceiling of the refresh retry backoff
  protocols: ["rocketws"],
  browserEvents: true, // pause/resume on page hidden and offline/online (browsers only)
};

/** The client: one connection that reconnects, resubscribes and recovers on its own. */
export class RocketWS extends Emitter {
  /**
   * @param {string} url   ws:// or wss:// address of the WebSocket endpoint
   * @param {object} options  see docs/client-js.md
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("no WebSocket: pass options.WebSocket (in Node.js 20: the ws package)");
    }
    this._timers = options.timers ?? {
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (id) => clearTimeout(id),
    };
    this._random = options.random ?? Math.random;
    this._now = options.now ?? (() => Date.now());
    this.state = "disconnected"; // disconnected | connecting | connected | closed
    this.client = null; // the server's id for this connection
    this.user = null;
    this.closeInfo = null; // {code, reason} of the terminal close
    this._token = options.token ?? null;
    this._getToken = options.getToken ?? null;
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject, timer}
    this._waiting = []; // calls made while not connected: sent once connected
    this._subs = new Map();
    this._attempt = 0;
    this._reconnectTimer = null;
    this._connectTimer = null;
    this._refreshTimer = null;
    this._livenessTimer = null;
    this._lastReceived = 0;
    this._pinging = false;
    this._refreshing = false;
    this._refreshAttempt = 0;
    this._paused = false;
    this._reconnectDue = false;
    this._transportId = 0;
    this._browser = this.options.browserEvents ? this._watchBrowser() : null;
  }

  /** Open the connection (subscriptions made before are subscribed once connected). */
  connect() {
    if (this.state === "connecting" || this.state === "connected") return;
    this.closeInfo = null;
    this._attempt = 0;
    this._open();
  }

  /** Close for good (code 1000): no reconnect; pending calls are rejected. */
  close(reason = "client closed") {
    this._terminal(1000, reason, false);
  }

  /** Alias of `close`. */
  disconnect(reason) {
    this.close(reason);
  }

  /** Resolves once connected (connecting first if needed, unless `autoConnect` is off);
   *  rejects if the client ends in the closed state first. */
  ready(timeout) {
    if (this.state === "connected") return Promise.resolve(this);
    if (this.state === "closed") return Promise.reject(this._closedError());
    if (this.state === "disconnected" && this.options.autoConnect !== false) this.connect();
    return new Promise((resolve, reject) => {
      let timer = null;
      const offs = [];
      const done = (fn, value) => {
        offs.forEach((off) => off());
        if (timer !== null) this._timers.clearTimeout(timer);
        fn(value);
      };
      offs.push(this.on("connected", () => done(resolve, this)));
      offs.push(this.on("closed", () => done(reject, this._closedError())));
      if (timeout != null) {
        timer = this._timers.setTimeout(() => done(reject, new TimeoutError(`not connected in ${timeout} ms`)), timeout);
      }
    });
  }

  /**
   * Call a method; resolves with its result, rejects with RpcError (an error answer),
   * TimeoutError or DisconnectedError.  Calls made while (re)connecting wait for the
   * connection within the same timeout.
   */
  call(method, params, { timeout } = {}) {
    return this._request([{ method, params }], timeout).then(([answer]) => {
      if (answer.error) throw answer.error;
      return answer.result;
    });
  }

  /**
   * Send several calls in one JSON-RPC batch: `calls` is a list of `{method, params}` or
   * `[method, params]`; resolves with one `{result}` or `{error: RpcError}` per call, in order.
   */
  batch(calls, { timeout } = {}) {
    const list = calls.map((c) => (Array.isArray(c) ? { method: c[0], params: c[1] } : c));
    if (list.length === 0) return Promise.resolve([]);
    return this._request(list, timeout);
  }

  /** A JSON-RPC notification (no answer); dropped with `false` when not connected. */
  notify(method, params) {
    if (this.state !== "connected") return false;
    const msg = { jsonrpc: "2.0", method };
    if (params !== undefined) msg.params = params;
    return this._sendFrame(msg);
  }

  /** Subscribe to `channel`; returns its Subscription (one per channel and client). */
  subscribe(channel, options = {}) {
    if (this._subs.has(channel)) throw new Error(`already subscribed to ${channel}: use getSubscription`);
    const sub = new Subscription(this, channel, options);
    this._subs.set(channel, sub);
    sub.subscribe();
    if (this.state === "disconnected" && this.options.autoConnect !== false) this.connect();
    return sub;
  }

  getSubscription(channel) {
    return this._subs.get(channel) ?? null;
  }

  /** Unsubscribe and forget the subscription of `channel`. */
  removeSubscription(sub) {
    const s = typeof sub === "string" ? this._subs.get(sub) : sub;
    if (!s) return;
    s.unsubscribe();
    this._subs.delete(s.channel);
  }

  subscriptions() {
    return new Map(this._subs);
  }

  /** Publish to the other subscribers of a channel this connection is subscribed to. */
  sendData(channel, data) {
    return this.call("send_data", { channel, data });
  }

  /** Clients subscribed to `channel` (namespaces with presence on). */
  presence(channel) {
    return this.call("presence", { channel });
  }

  presenceStats(channel) {
    return this.call("presence_stats", { channel });
  }

  /** Publications kept for `channel`: `{since: {offset, epoch}, limit, reverse}`. */
  history(channel, options = {}) {
    return this.call("history", { channel, ...options });
  }

  /** Call an application method through the server's RPC proxy. */
  rpc(method, params, options) {
    const p = { method };
    if (params !== undefined) p.params = params;
    return this.call("rpc", p, options);
  }

  // -- the connection ------------------------------------------------------------------

  _setState(state, context = {}) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous, ...context });
  }

  async _open() {
    this._cancel("_reconnectTimer");
    this._reconnectDue = false;
    if (this._paused) {
      this._setState("connecting", { reason: "offline" });
      this._reconnectDue = true;
      return;
    }
    this._setState("connecting");
    const transportId = ++this._transportId;
    let ws;
    try {
      if (this._getToken && (this._token === null || this._tokenExpired())) {
        const token = await this._getToken();
        if (transportId !== this._transportId || this.state !== "connecting") return;
        if (token === null || token === undefined || token === "") {
          this._terminal(4501, "getToken() gave no token (unauthorized)", false);
          return;
        }
        this._token = token;
        this._tokenExpiresAt = null;
      }
      ws = new this._WebSocket(this.url, this.options.protocols);
    } catch (err) {
      if (transportId !== this._transportId) return;
      this._emit("error", { type: "connect", error: err });
      this._scheduleReconnect({ code: 1006, reason: String(err?.message ?? err) });
      return;
    }
    this._ws = ws;
    this._connectTimer = this._timers.setTimeout(() => {
      this._connectTimer = null;
      this._drop(ws, 4010, "connect timeout");
    }, this.options.timeout);
    ws.onopen = () => {
      if (this._ws === ws) this._handshake(ws);
    };
    ws.onmessage = (event) => {
      if (this._ws === ws) this._received(event.data);
    };
    ws.onerror = () => {
      if (this._ws === ws) this._emit("error", { type: "transport", error: new Error("WebSocket error") });
    };
    ws.onclose = (event) => {
      if (this._ws === ws) this._closed(event.code, event.reason);
    };
  }

  async _handshake(ws) {
    const params = { name: this.options.name, version: this.options.version };
    if (this._token) params.token = this._token;
    this._lastReceived = this._now();
    let result;
    try {
      const [answer] = await this._send([{ method: "connect", params }], this.options.timeout, ws);
      if (answer.error) throw answer.error;
      result = answer.result;
    } catch (err) {
      if (this._ws !== ws) return;
      this._emit("error", { type: "connect", error: err });
      // A refused connect is followed by the server's close frame (4501, 4502, 4503,
      // 4012...), which decides; a lost or silent one reconnects.
      if (err instanceof TimeoutError) this._drop(ws, 4010, "connect timeout");
      return;
    }
    if (this._ws !== ws) return;
    this._cancel("_connectTimer");
    this._attempt = 0;
    this.client = result?.client ?? null;
    this.user = result?.user ?? null;
    this._serverPing = (result?.ping_interval ?? 0) * 1000;
    this._setState("connected", { client: this.client });
    this._scheduleRefresh(result?.expires_in);
    this._scheduleLiveness();
    this._emit("connected", { client: this.client, user: this.user, channels: result?.channels ?? [] });
    const waiting = this._waiting;
    this._waiting = [];
    for (const entry of waiting) this._sendEntry(entry);
    for (const sub of this._subs.values()) sub._send();
  }

  _closed(code, reason) {
    this._ws = null;
    this._cancel("_connectTimer");
    this._cancel("_livenessTimer");
    this._cancel("_refreshTimer");
    this._failPending(new DisconnectedError(`connection closed (${code} ${reason})`.trim(), code, reason));
    for (const sub of this._subs.values()) sub._connectionLost();
    const wasConnected = this.state === "connected";
    this._emit("disconnected", { code, reason, reconnect: reconnectAllowed(code) });
    if (this.state === "closed") return;
    // A refused or expired token: with getToken a new one may be fetched; else stop.
    if ((code === 4502 || code === 4011) && this._getToken) {
      this._token = null;
      this._scheduleReconnect({ code, reason, wasConnected });
      return;
    }
    if (code === 4011) {
      this._terminal(code, reason || "token expired, no refresh", false);
      return;
    }
    if (!reconnectAllowed(code)) {
      this._terminal(code, reason, false);
      return;
    }
    this._scheduleReconnect({ code, reason, wasConnected });
  }

  _scheduleReconnect(context) {
    this._ws = null;
    this._setState("connecting", context);
    const delay = backoff(this._attempt++, this._backoffOptions());
    this._emit("reconnecting", { ...context, delay, attempt: this._attempt });
    this._cancel("_reconnectTimer");
    this._reconnectTimer = this._timers.setTimeout(() => {
      this._reconnectTimer = null;
      this._open();
    }, delay);
  }

  _backoffOptions() {
    return { minDelay: this.options.minReconnectDelay, maxDelay: this.options.maxReconnectDelay, random: this._random };
  }

  // Close the transport ourselves and handle it as lost (reconnect by the rule).
  _drop(ws, code, reason) {
    if (this._ws !== ws) return;
    try {
      quiet(ws);
      ws.close(code >= 4000 ? 4000 : 1000, reason);
    } catch {
      // already closed
    }
    this._closed(code, reason);
  }

  _terminal(code, reason, _reconnect) {
    const ws = this._ws;
    this._ws = null;
    this._transportId++;
    for (const name of ["_reconnectTimer", "_connectTimer", "_livenessTimer", "_refreshTimer"]) this._cancel(name);
    if (ws) {
      quiet(ws);
      try {
        ws.close(1000, reason.slice(0, 100));
      } catch {
        // not open yet or closed already
      }
    }
    const error = new DisconnectedError(`closed: ${code} ${reason}`.trim(), code, reason);
    this._failPending(error);
    for (const entry of this._waiting.splice(0)) {
      this._timers.clearTimeout(entry.timer);
      entry.reject(error);
    }
    for (const sub of this._subs.values()) sub._connectionLost();
    if (this.state === "closed") return;
    this.closeInfo = { code, reason };
    this._setState("closed", { code, reason });
    this._emit("closed", { code, reason });
  }

  _closedError() {
    const { code, reason } = this.closeInfo ?? { code: 1000, reason: "closed" };
    return new DisconnectedError(`closed: ${code} ${reason}`.trim(), code, reason);
  }

  _cancel(name) {
    if (this[name] !== null && this[name] !== undefined) {
      this._timers.clearTimeout(this[name]);
      this[name] = null;
    }
  }

  _failPending(error) {
    for (const entry of this._pending.values()) {
      this._timers.clearTimeout(entry.timer);
      entry.reject(error);
    }
    this._pending.clear();
  }

  // -- requests ------------------------------------------------------------------------

  _request(calls, timeout) {
    if (this.state === "closed") return Promise.reject(this._closedError());
    if (this.state === "disconnected" && this.options.autoConnect !== false) this.connect();
    if (this.state === "connected") return this._send(calls, timeout, this._ws);
    return new Promise((resolve, reject) => {
      const entry = { calls, resolve, reject, deadline: this._now() + (timeout ?? this.options.timeout) };
      entry.timer = this._timers.setTimeout(() => {
        const i = this._waiting.indexOf(entry);
        if (i >= 0) this._waiting.splice(i, 1);
        reject(new TimeoutError(`not connected within ${timeout ?? this.options.timeout} ms`));
      }, timeout ?? this.options.timeout);
      this._waiting.push(entry);
    });
  }

  _sendEntry(entry) {
    this._timers.clearTimeout(entry.timer);
    const left = Math.max(1, entry.deadline - this._now());
    this._send(entry.calls, left, this._ws).then(entry.resolve, entry.reject);
  }

  // Send calls on `ws` as one request (or batch); resolves with [{result} | {error}].
  _send(calls, timeout, ws) {
    const ids = calls.map(() => this._nextId++);
    const msgs = calls.map(({ method, params }, i) => {
      const msg = { jsonrpc: "2.0", method, id: ids[i] };
      if (params !== undefined) msg.params = params;
      return msg;
    });
    return new Promise((resolve, reject) => {
      const answers = new Array(calls.length);
      let left = calls.length;
      const ms = timeout ?? this.options.timeout;
      const timer = this._timers.setTimeout(() => {
        ids.forEach((id) => this._pending.delete(id));
        reject(new TimeoutError(`no answer to ${calls.map((c) => c.method).join(", ")} in ${ms} ms`));
      }, ms);
      const shared = { timer, reject };
      ids.forEach((id, i) => {
        this._pending.set(id, {
          timer,
          reject: (err) => {
            ids.forEach((other) => this._pending.delete(other));
            shared.reject(err);
          },
          resolve: (answer) => {
            answers[i] = answer;
            this._pending.delete(id);
            if (--left === 0) {
              this._timers.clearTimeout(timer);
              resolve(answers);
            }
          },
        });
      });
      if (!this._sendFrame(msgs.length === 1 ? msgs[0] : msgs, ws)) {
        this._timers.clearTimeout(timer);
        ids.forEach((id) => this._pending.delete(id));
        reject(new DisconnectedError("not connected"));
      }
    });
  }

  _sendFrame(msg, ws = this._ws) {
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(msg));
      return true;
    } catch (err) {
      this._emit("error", { type: "transport", error: err });
      return false;
    }
  }

  // -- what the server sends -----------------------------------------------------------

  _received(data) {
    this._lastReceived = this._now();
    this._pinging = false;
    let msg;
    try {
      msg = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch (err) {
      this._emit("error", { type: "protocol", error: err });
      return;
    }
    for (const item of Array.isArray(msg) ? msg : [msg]) {
      if (item && item.id !== undefined && item.id !== null && !item.method) this._answer(item);
      else if (item && typeof item.method === "string") this._push(item.method, item.params ?? {});
      else if (item && item.error) this._emit("error", { type: "server", error: toRpcError(item.error) });
    }
  }

  _answer(item) {
    const pending = this._pending.get(item.id);
    if (!pending) return; // timed out already
    if (item.error) pending.resolve({ error: toRpcError(item.error) });
    else pending.resolve({ result: item.result });
  }

  _push(method, params) {
    const sub = params.channel !== undefined ? this._subs.get(params.channel) : undefined;
    switch (method) {
      case "message":
        if (sub) sub._deliver(params);
        else this._emit("message", params); // a server-side subscription
        break;
      case "broadcast":
        this._emit("broadcast", params);
        break;
      case "join":
      case "leave":
        if (sub) sub._emit(method, params);
        this._emit(method, params);
        break;
      case "refresh_required":
        this._refresh();
        break;
      case "subscribed":
      case "unsubscribed":
        // A backend changed this connection's subscriptions (server-side subscribe).
        if (method === "unsubscribed" && sub && sub.state !== "unsubscribed") sub._removedByServer();
        this._emit(method, params);
        break;
      default:
        this._emit("push", { method, params });
    }
  }

  // -- tokens --------------------------------------------------------------------------

  _tokenExpired() {
    return this._tokenExpiresAt != null && this._now() >= this._tokenExpiresAt;
  }

  _scheduleRefresh(expiresIn) {
    this._cancel("_refreshTimer");
    if (expiresIn === null || expiresIn === undefined) {
      this._tokenExpiresAt = null;
      return;
    }
    const ms = expiresIn * 1000;
    this._tokenExpiresAt = this._now() + ms;
    if (!this._getToken) return;
    const delay = Math.max(0, ms - Math.min(this.options.refreshBefore, ms / 2));
    this._refreshTimer = this._timers.setTimeout(() => {
      this._refreshTimer = null;
      this._refresh();
    }, delay);
  }

  async _refresh() {
    if (this._refreshing || this.state !== "connected") return;
    if (!this._getToken) {
      this._emit("error", { type: "refresh", error: new Error("the token expires and no getToken was given") });
      return;
    }
    this._refreshing = true;
    this._cancel("_refreshTimer");
    const ws = this._ws;
    try {
      const token = await this._getToken();
      if (this._ws !== ws) return;
      if (token === null || token === undefined || token === "") {
        this._terminal(4501, "getToken() gave no token (unauthorized)", false);
        return;
      }
      const result = await this.call("refresh", { token });
      this._token = token;
      this._refreshAttempt = 0;
      this._emit("refreshed", { expiresIn: result?.expires_in ?? null });
      this._scheduleRefresh(result?.expires_in);
    } catch (err) {
      if (this._ws !== ws || this.state !== "connected") return;
      this._emit("error", { type: "refresh", error: err });
      const delay = backoff(this._refreshAttempt++, {
        minDelay: this.options.minReconnectDelay,
        maxDelay: this.options.maxRefreshDelay,
        random: this._random,
      });
      this._refreshTimer = this._timers.setTimeout(() => {
        this._refreshTimer = null;
        this._refresh();
      }, Math.max(delay, 100));
    } finally {
      this._refreshing = false;
    }
  }

  // -- liveness ------------------------------------------------------------------------

  _pingInterval() {
    if (this.options.pingInterval != null) return this.options.pingInterval;
    return this._serverPing > 0 ? this._serverPing : 25000;
  }

  // Check every so often that the server was heard from lately; ask it (a `ping` call)
  // after a quiet pingInterval, and drop the connection after pongTimeout more.
  _scheduleLiveness() {
    this._cancel("_livenessTimer");
    const interval = this._pingInterval();
    if (!(interval > 0)) return;
    const quiet = this._now() - this._lastReceived;
    const limit = this._pinging ? interval + this.options.pongTimeout : interval;
    const due = limit - quiet;
    this._livenessTimer = this._timers.setTimeout(() => {
      this._livenessTimer = null;
      if (this.state !== "connected" || !this._ws) return;
      const silent = this._now() - this._lastReceived;
      if (silent >= interval + this.options.pongTimeout) {
        this._drop(this._ws, 4009, "server silent");
        return;
      }
      if (silent >= interval && !this._pinging) {
        this._pinging = true;
        this._send([{ method: "ping" }], this.options.pongTimeout + interval, this._ws).catch(() => {});
      }
      this._scheduleLiveness();
    }, Math.max(due, 50));
  }

  // -- browsers: offline/online, hidden/visible -----------------------------------------

  _watchBrowser() {
    const win = globalThis.window;
    const doc = globalThis.document;
    if (!win || typeof win.addEventListener !== "function") return null;
    const offline = () => {
      this._paused = true;
      if (this.state === "connected" || this.state === "connecting") {
        // Frames cannot flow: drop the socket now rather than after the liveness deadline.
        if (this._ws) this._drop(this._ws, 1006, "offline");
        this._cancel("_reconnectTimer");
        this._reconnectDue = true;
      }
    };
    const online = () => {
      this._paused = false;
      if (this._reconnectDue || (this.state === "connecting" && this._reconnectTimer !== null)) {
        this._attempt = 0;
        this._open();
      }
    };
    const visible = () => {
      if (doc.visibilityState !== "visible") return;
      // Back to a tab that waits to reconnect: try now rather than at the end of a backoff.
      if (this.state === "connecting" && this._reconnectTimer !== null && !this._paused) this._open();
      // A hidden tab's timers are throttled: check liveness now.
      else if (this.state === "connected") this._scheduleLiveness();
    };
    win.addEventListener("offline", offline);
    win.addEventListener("online", online);
    doc?.addEventListener?.("visibilitychange", visible);
    return () => {
      win.removeEventListener("offline", offline);
      win.removeEventListener("online", online);
      doc?.removeEventListener?.("visibilitychange", visible);
    };
  }
}

// Detach a transport we are done with.  Its error handler stays a no-op: Node's ws emits
// "error" when a connecting socket is closed, and an EventEmitter without a listener throws.
function quiet(ws) {
  ws.onopen = ws.onmessage = ws.onclose = null;
  ws.onerror = () => {};
}

function toRpcError(error) {
  return new RpcError(error?.code ?? -32603, error?.message ?? "error", error?.data);
}

export default RocketWS;
