// rocketws.js against a real RocketWS process (`node --test`; tests/test_client_js.py runs it
// under pytest, so `make test` does).  WebSocket: the `ws` package (Node 20 has none).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import {
  backoff,
  DisconnectedError,
  reconnectAllowed,
  RocketWS,
  RpcError,
  TimeoutError,
} from "../../clients/js/rocketws.js";
import { Relay } from "./lib/relay.mjs";
import { FakeClock, nextEvent, SECRET, Server, signedToken, token, waitUntil } from "./lib/server.mjs";

const clients = [];
function client(url, options = {}) {
  const rws = new RocketWS(url, { WebSocket, minReconnectDelay: 20, maxReconnectDelay: 200, ...options });
  clients.push(rws);
  return rws;
}
function closeAll() {
  for (const rws of clients.splice(0)) rws.close();
}
// One server for the tests of a describe block: started before them, stopped after.
function serverForSuite(env = {}) {
  const srv = new Server(env);
  before(() => srv.start());
  after(async () => {
    closeAll();
    await srv.stop();
  });
  return srv;
}
// A connection token made in this process: getToken callbacks use it, since `manage.py
// token` (a Python start, run synchronously) would block the event loop for a second.
function quickToken(sub, ttl) {
  const now = Math.floor(Date.now() / 1000);
  return signedToken({ sub, iat: now, exp: now + ttl });
}
const subscribers = (srv, channel) => srv.result("total_subscribers", { channel });

describe("calls", () => {
  const srv = serverForSuite();

  test("call resolves with the result and connects on first use", async () => {
    const rws = client(srv.wsUrl);
    const states = [];
    rws.on("state", (s) => states.push(s.state));
    assert.equal(await rws.call("ping"), "pong");
    assert.deepEqual(states, ["connecting", "connected"]);
    assert.match(rws.client, /\S+/);
    assert.deepEqual(await rws.call("heartbeat"), { heartbeat: "ok" });
  });

  test("an error answer rejects with RpcError carrying code, message and data", async () => {
    const rws = client(srv.wsUrl);
    await assert.rejects(rws.call("no_such_method"), (err) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.code, -32601);
      assert.equal(err.message, "Method not found");
      assert.equal(err.data.method, "no_such_method");
      return true;
    });
    await assert.rejects(rws.call("subscribe", {}), (err) => err.code === -32602 && err.data.param === "channel");
    await assert.rejects(rws.call("emit", { channel: "c", data: 1 }), (err) => err.code === -32601);
    // the connection goes on after errors
    assert.equal(await rws.call("ping"), "pong");
  });

  test("batch answers every member in order, errors as values", async () => {
    const rws = client(srv.wsUrl);
    const answers = await rws.batch([
      ["ping"],
      { method: "subscribe", params: { channel: "batch-room" } },
      ["nope"],
      { method: "subscriptions" },
    ]);
    assert.equal(answers.length, 4);
    assert.deepEqual(answers[0], { result: "pong" });
    assert.deepEqual(answers[1], { result: { channel: "batch-room", subscribed: true } });
    assert.ok(answers[2].error instanceof RpcError && answers[2].error.code === -32601);
    assert.deepEqual(answers[3], { result: ["batch-room"] });
    assert.deepEqual(await rws.batch([]), []);
  });

  test("a call without an answer in time rejects with TimeoutError", async () => {
    const rws = client(srv.wsUrl);
    await rws.ready(10000);
    srv.signal("SIGSTOP"); // the server stops answering; the socket stays open
    try {
      const started = Date.now();
      await assert.rejects(rws.call("ping", undefined, { timeout: 300 }), TimeoutError);
      assert.ok(Date.now() - started >= 290);
    } finally {
      srv.signal("SIGCONT");
    }
    assert.equal(await rws.call("ping"), "pong"); // a late answer of the timed-out call is ignored
  });

  test("calls made before the connection are sent once connected", async () => {
    const rws = client(srv.wsUrl, { autoConnect: false });
    const pending = Promise.all([rws.call("ping"), rws.call("subscriptions")]);
    assert.equal(rws.state, "disconnected");
    rws.connect();
    assert.deepEqual(await pending, ["pong", []]);
  });

  test("close rejects pending calls and ends in the closed state without reconnecting", async () => {
    const rws = client(srv.wsUrl);
    await rws.ready(10000);
    srv.signal("SIGSTOP");
    try {
      const call = rws.call("ping", undefined, { timeout: 5000 });
      rws.close();
      await assert.rejects(call, DisconnectedError);
    } finally {
      srv.signal("SIGCONT");
    }
    assert.equal(rws.state, "closed");
    assert.deepEqual(rws.closeInfo, { code: 1000, reason: "client closed" });
    await assert.rejects(rws.call("ping"), DisconnectedError);
  });
});

describe("subscriptions", () => {
  const srv = serverForSuite();

  test("a subscription goes unsubscribed -> subscribing -> subscribed and gets emits", async () => {
    const rws = client(srv.wsUrl);
    const got = [];
    const states = [];
    const sub = rws.subscribe("news", { onMessage: (m) => got.push(m) });
    sub.on("state", (s) => states.push(s.state));
    assert.equal(sub.state, "unsubscribed"); // subscribes once connected
    await sub.ready(10000);
    assert.deepEqual(states, ["subscribing", "subscribed"]);
    assert.equal(await subscribers(srv, "news"), 1);
    const emitted = await srv.result("emit", { channel: "news", data: { n: 1, text: "hé" } });
    assert.equal(emitted.delivered, 1);
    await waitUntil(() => got.length === 1, 10000, "the push");
    assert.equal(got[0].channel, "news");
    assert.deepEqual(got[0].data, { n: 1, text: "hé" });
    assert.equal(typeof got[0].ts, "number");
    assert.throws(() => rws.subscribe("news"), /already subscribed/);
  });

  test("unsubscribe stops delivery and the server forgets the subscription", async () => {
    const rws = client(srv.wsUrl);
    const got = [];
    const sub = rws.subscribe("unsub-room", { onMessage: (m) => got.push(m.data) });
    await sub.ready(10000);
    sub.unsubscribe();
    assert.equal(sub.state, "unsubscribed");
    await waitUntil(async () => (await subscribers(srv, "unsub-room")) === 0, 10000, "unsubscribed on the server");
    await srv.result("emit", { channel: "unsub-room", data: "late" });
    assert.equal(await rws.call("ping"), "pong"); // anything pushed before this answer has arrived
    assert.deepEqual(got, []);
    sub.subscribe();
    await sub.ready(10000);
    await srv.result("emit", { channel: "unsub-room", data: "again" });
    await waitUntil(() => got.length === 1, 10000);
    assert.deepEqual(got, ["again"]);
  });

  test("sendData reaches the other subscribers, not the sender", async () => {
    const alice = client(srv.wsUrl);
    const bob = client(srv.wsUrl);
    const aliceGot = [];
    const bobGot = [];
    const a = alice.subscribe("chat", { onMessage: (m) => aliceGot.push(m.data) });
    const b = bob.subscribe("chat", { onMessage: (m) => bobGot.push(m.data) });
    await Promise.all([a.ready(10000), b.ready(10000)]);
    assert.deepEqual(await alice.sendData("chat", { text: "hi bob" }), { channel: "chat", delivered: 1 });
    assert.deepEqual(await b.publish({ text: "hi alice" }), { channel: "chat", delivered: 1 });
    await waitUntil(() => aliceGot.length === 1 && bobGot.length === 1, 10000);
    assert.deepEqual(bobGot, [{ text: "hi bob" }]);
    assert.deepEqual(aliceGot, [{ text: "hi alice" }]);
    await assert.rejects(alice.sendData("not-subscribed", 1), (err) => err.code === -32001);
  });

  test("broadcast is an event of the client", async () => {
    const rws = client(srv.wsUrl);
    await rws.ready(10000);
    const event = nextEvent(rws, "broadcast");
    const { delivered } = await srv.result("notify_all", { data: { alert: "maintenance" } });
    assert.ok(delivered >= 1);
    assert.deepEqual((await event).data, { alert: "maintenance" });
  });

  test("a refused subscription ends unsubscribed with the error", async () => {
    const rws = client(srv.wsUrl);
    const sub = rws.subscribe("\u0001bad");
    const errors = [];
    sub.on("error", (e) => errors.push(e.error));
    await assert.rejects(sub.ready(10000), (err) => err instanceof RpcError && err.code === -32602);
    assert.equal(sub.state, "unsubscribed");
    assert.equal(errors.length, 1);
  });
});

describe("reconnect", () => {
  test("after a server restart the client reconnects and resubscribes every subscription", async () => {
    const srv = await new Server().start();
    try {
      const rws = client(srv.wsUrl);
      const got = { a: [], b: [] };
      const subA = rws.subscribe("room-a", { onMessage: (m) => got.a.push(m.data) });
      const subB = rws.subscribe("room-b", { onMessage: (m) => got.b.push(m.data) });
      await Promise.all([subA.ready(10000), subB.ready(10000)]);
      const disconnected = nextEvent(rws, "disconnected");
      await srv.stop(); // SIGTERM: 1001 server shutting down
      assert.deepEqual(await disconnected, { code: 1001, reason: "server shutting down", reconnect: true });
      assert.equal(rws.state, "connecting");
      assert.equal(subA.state, "subscribing");
      await srv.start(); // the same port
      await nextEvent(rws, "connected", { timeout: 15000 });
      await Promise.all([subA.ready(10000), subB.ready(10000)]);
      assert.deepEqual(await srv.result("available_channels"), ["room-a", "room-b"]);
      await srv.result("emit", { channel: "room-a", data: "after" });
      await srv.result("emit", { channel: "room-b", data: "after" });
      await waitUntil(() => got.a.length === 1 && got.b.length === 1, 10000);
    } finally {
      closeAll();
      await srv.stop();
    }
  });

  test("backoff: full jitter over 0.5 s doubling to 20 s by default, reset once connected", async () => {
    assert.equal(backoff(0, { random: () => 1 }), 500);
    assert.deepEqual(
      Array.from({ length: 9 }, (_, i) => backoff(i, { random: () => 0.999999 })),
      [499, 999, 1999, 3999, 7999, 15999, 19999, 19999, 19999],
    );
    assert.equal(backoff(3, { random: () => 0 }), 0);
    assert.equal(backoff(3, { random: () => 0.5 }), 2000);
    assert.equal(backoff(100, { random: () => 0.5, maxDelay: 20000 }), 10000);

    // The client, on a fake clock, against a real server that goes away and comes back.
    const srv = await new Server().start();
    const clock = new FakeClock();
    const rws = new RocketWS(srv.wsUrl, { WebSocket, timers: clock, now: clock.now, random: () => 0.5 });
    clients.push(rws);
    try {
      await rws.ready();
      const delays = [];
      rws.on("reconnecting", (r) => delays.push(r.delay));
      await srv.stop();
      await waitUntil(() => delays.length === 1, 10000, "the first reconnect");
      for (let attempt = 1; attempt < 8; attempt++) {
        clock.advance(delays[attempt - 1]); // the reconnect timer fires; the attempt is refused
        await waitUntil(() => delays.length === attempt + 1, 10000, `reconnect ${attempt}`);
      }
      assert.deepEqual(delays, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
      assert.equal(clock.time, 250 + 500 + 1000 + 2000 + 4000 + 8000 + 10000);
      // Nothing happens before the delay is over.
      await srv.start();
      clock.advance(9999);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(rws.state, "connecting");
      clock.advance(1);
      await nextEvent(rws, "connected");
      // Connected again: the next loss starts over from the smallest delay.
      srv.signal("SIGKILL");
      await waitUntil(() => delays.length === 9, 10000, "the reconnect after a kill");
      assert.equal(delays[8], 250);
    } finally {
      closeAll();
      await srv.stop().catch(() => {});
    }
  });

  test("the close-code rule: 4000-4499 reconnect, 4500-4999 do not", () => {
    for (const code of [1001, 1006, 1011, 1012, 4000, 4008, 4009, 4010, 4029, 4499]) assert.ok(reconnectAllowed(code), code);
    for (const code of [1000, 1002, 1003, 1007, 1009, 4500, 4501, 4502, 4503, 4504, 4999]) assert.ok(!reconnectAllowed(code), code);
  });

  test("a silent server is detected by the client's ping and the connection replaced", async () => {
    const srv = await new Server().start();
    try {
      const rws = client(srv.wsUrl, { pingInterval: 200, pongTimeout: 300, timeout: 1000 });
      const sub = rws.subscribe("alive");
      await sub.ready(10000);
      const lost = nextEvent(rws, "disconnected");
      srv.signal("SIGSTOP"); // TCP stays up, nothing comes back
      const started = Date.now();
      let event;
      try {
        event = await lost;
      } finally {
        srv.signal("SIGCONT");
      }
      assert.deepEqual(event, { code: 4009, reason: "server silent", reconnect: true });
      const took = Date.now() - started;
      assert.ok(took >= 450 && took < 3000, `detected after ${took} ms`);
      await sub.ready(10000); // reconnected and resubscribed
      assert.equal(rws.state, "connected");
    } finally {
      closeAll();
      await srv.stop();
    }
  });
});

describe("tokens", () => {
  const srv = serverForSuite({ ROCKETWS_TOKEN_HMAC_SECRET: SECRET, ROCKETWS_REFRESH_GRACE: "2" });

  test("a token connects as its user", async () => {
    const rws = client(srv.wsUrl, { token: token("alice") });
    const connected = nextEvent(rws, "connected");
    rws.connect();
    assert.equal((await connected).user, "alice");
    assert.equal(rws.user, "alice");
  });

  test("a rejected token ends in the closed state with the reason, without reconnecting", async () => {
    const rws = client(srv.wsUrl, { token: token("mallory", 3600, "another-secret-of-32-bytes-or-more-xx") });
    const reconnects = [];
    rws.on("reconnecting", (r) => reconnects.push(r));
    const closed = nextEvent(rws, "closed");
    rws.connect();
    assert.deepEqual(await closed, { code: 4501, reason: "invalid token" });
    assert.equal(rws.state, "closed");
    assert.deepEqual(rws.closeInfo, { code: 4501, reason: "invalid token" });
    assert.deepEqual(reconnects, []);
    await assert.rejects(rws.call("ping"), (err) => err instanceof DisconnectedError && err.code === 4501);
  });

  test("a backend disconnect (4504) is terminal", async () => {
    const rws = client(srv.wsUrl, { token: token("banned") });
    await rws.ready(10000);
    const closed = nextEvent(rws, "closed");
    assert.equal((await srv.result("disconnect", { user: "banned" })).reached, 1);
    assert.deepEqual(await closed, { code: 4504, reason: "disconnected by the server" });
  });

  test("a backend unsubscribe ends the subscription, which is not resubscribed", async () => {
    const rws = client(srv.wsUrl, { token: token("gina") });
    const sub = rws.subscribe("kicked");
    await sub.ready(10000);
    const ended = nextEvent(sub, "unsubscribed");
    assert.equal((await srv.result("unsubscribe", { user: "gina", channel: "kicked" })).reached, 1);
    assert.deepEqual(await ended, { reason: "unsubscribed by the server" });
    assert.equal(sub.state, "unsubscribed");
    assert.deepEqual(await rws.call("subscriptions"), []);
  });

  test("a backend disconnect with a 4000-4499 code reconnects", async () => {
    const rws = client(srv.wsUrl, { token: token("bob") });
    await rws.ready(10000);
    const lost = nextEvent(rws, "disconnected");
    await srv.result("disconnect", { user: "bob", code: 4100, reason: "move along" });
    assert.deepEqual(await lost, { code: 4100, reason: "move along", reconnect: true });
    await nextEvent(rws, "connected");
  });

  test("getToken is called on connect and again before expiry; the connection outlives the first token", async () => {
    let calls = 0;
    const rws = client(srv.wsUrl, {
      getToken: async () => {
        calls += 1;
        return quickToken("carol", 4);
      },
      refreshBefore: 2000,
    });
    const disconnects = [];
    rws.on("disconnected", (d) => disconnects.push(d));
    await rws.ready(10000);
    assert.equal(calls, 1);
    const refreshed = await nextEvent(rws, "refreshed", { timeout: 8000 });
    assert.equal(calls, 2);
    assert.ok(refreshed.expiresIn >= 3 && refreshed.expiresIn <= 4, JSON.stringify(refreshed));
    // Past the first token's exp and its grace (4 s + 2 s): still the same connection.
    const client0 = rws.client;
    await nextEvent(rws, "refreshed", { timeout: 8000 });
    assert.equal(rws.client, client0);
    assert.deepEqual(disconnects, []);
    assert.equal(await rws.call("ping"), "pong");
  });

  test("the server's refresh_required push makes the client refresh", async () => {
    let calls = 0;
    const rws = client(srv.wsUrl, {
      getToken: () => {
        calls += 1;
        return quickToken("dave", 7);
      },
      refreshBefore: 0, // only the server's notice (5 s before exp) triggers it
    });
    await rws.ready(10000);
    const started = Date.now();
    await nextEvent(rws, "refreshed", { timeout: 10000 });
    const took = Date.now() - started;
    assert.ok(took >= 1000 && took < 6000, `refreshed after ${took} ms`);
    assert.equal(calls, 2);
  });

  test("getToken failing is retried with backoff until it gives a token", async () => {
    let calls = 0;
    const rws = client(srv.wsUrl, {
      getToken: async () => {
        calls += 1;
        if (calls < 3) throw new Error("auth backend down");
        return quickToken("erin", 3600);
      },
    });
    const errors = [];
    rws.on("error", (e) => errors.push(e.type));
    await rws.ready(10000);
    assert.equal(calls, 3);
    assert.deepEqual(errors, ["connect", "connect"]);
    assert.equal(rws.user, "erin");
  });

  test("getToken giving no token is terminal (unauthorized)", async () => {
    const rws = client(srv.wsUrl, { getToken: async () => "" });
    const closed = nextEvent(rws, "closed");
    rws.connect();
    assert.equal((await closed).code, 4501);
  });

  test("a token that expired is replaced through getToken on reconnect (4502)", async () => {
    let calls = 0;
    const rws = client(srv.wsUrl, {
      getToken: async () => {
        calls += 1;
        return calls === 1 ? quickToken("frank", -60) : quickToken("frank", 3600);
      },
    });
    const lost = nextEvent(rws, "disconnected");
    rws.connect();
    assert.equal((await lost).code, 4502);
    await rws.ready(10000);
    assert.equal(calls, 2);
    assert.equal(rws.user, "frank");
  });
});

describe("recovery (channels with history)", () => {
  const NAMESPACES = JSON.stringify([
    { name: "h", history_size: 100, history_ttl: 300 },
    { name: "short", history_size: 5, history_ttl: 300 },
  ]);
  const srv = serverForSuite({ ROCKETWS_NAMESPACES: NAMESPACES });

  // A subscriber behind a relay; `missed` publications are emitted while the relay is cut.
  async function dropAndRecover(channel, missed) {
    const relay = await new Relay(srv.wsPort).listen();
    try {
      const rws = client(relay.url);
      const got = [];
      const contexts = [];
      const sub = rws.subscribe(channel, { onMessage: (m) => got.push(m.data), onSubscribed: (c) => contexts.push(c) });
      await sub.ready(10000);
      for (let i = 1; i <= 5; i++) await srv.result("emit", { channel, data: i });
      await waitUntil(() => got.length === 5, 10000, "the first five");
      const lost = nextEvent(rws, "disconnected");
      relay.cut();
      assert.equal((await lost).code, 1006);
      await waitUntil(async () => (await subscribers(srv, channel)) === 0, 10000, "the server saw the reset");
      for (let i = 6; i < 6 + missed; i++) {
        const answer = await srv.result("emit", { channel, data: i });
        assert.equal(answer.delivered, 0);
      }
      relay.restore();
      await nextEvent(sub, "subscribed", { timeout: 10000 });
      await srv.result("emit", { channel, data: "live" });
      await waitUntil(() => got.at(-1) === "live", 10000, "the live push after recovery");
      return { got, contexts, sub };
    } finally {
      await relay.close();
    }
  }

  test("a subscriber cut off while 20 are published gets all 20 exactly once, in order", async (t) => {
    const first = await srv.result("emit", { channel: "h:probe", data: 0 });
    if (!("offset" in first)) {
      t.skip("the server has no history (issue 11 not merged)");
      return;
    }
    const { got, contexts, sub } = await dropAndRecover("h:room", 20);
    assert.deepEqual(got, [...Array.from({ length: 25 }, (_, i) => i + 1), "live"]);
    assert.deepEqual(contexts[0], { wasRecovering: false, recovered: false, recoveredCount: 0, epochChanged: false });
    assert.deepEqual(contexts[1], { wasRecovering: true, recovered: true, recoveredCount: 20, epochChanged: false });
    assert.equal(sub.offset, 26);
    const history = await srv.result("history", { channel: "h:room", limit: 3, reverse: true });
    assert.deepEqual(
      history.publications.map((p) => p.data),
      ["live", 25, 24],
    );
  });

  test("more missed than the history keeps: recovered false, then live again", async (t) => {
    const first = await srv.result("emit", { channel: "short:probe", data: 0 });
    if (!("offset" in first)) {
      t.skip("the server has no history (issue 11 not merged)");
      return;
    }
    const { got, contexts } = await dropAndRecover("short:room", 20);
    assert.deepEqual(contexts[1], { wasRecovering: true, recovered: false, recoveredCount: 0, epochChanged: false });
    assert.deepEqual(got, [1, 2, 3, 4, 5, "live"]); // nothing partial: the app reloads
  });
});
