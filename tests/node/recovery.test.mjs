// Recovery and de-duplication by offset in rocketws.js, with the server's side scripted
// (a fake WebSocket): the answers follow docs/protocol.md and issue 11's recovery answer
// `{subscribed, recovered, epoch, offset, publications}`.  The same flow runs against a
// real server in rocketws.test.mjs ("recovery") once history is on the server.
import assert from "node:assert/strict";
import { test } from "node:test";

import { RocketWS } from "../../clients/js/rocketws.js";
import { FakeClock } from "./lib/server.mjs";

class ScriptedSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    ScriptedSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
  // -- the scripted server --
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  push(msg) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  answer(method, result) {
    const req = this.sent.find((m) => m.method === method && !m.answered);
    assert.ok(req, `no ${method} request among ${JSON.stringify(this.sent)}`);
    req.answered = true;
    this.push({ jsonrpc: "2.0", result, id: req.id });
    return req;
  }
  lose() {
    this.readyState = 3;
    this.onclose?.({ code: 1006, reason: "" });
  }
}

const flush = () => new Promise((r) => setImmediate(r));
const message = (offset, epoch = "e1") => ({
  jsonrpc: "2.0",
  method: "message",
  params: { channel: "room", data: `m${offset}`, offset, epoch },
});

const CONNECTED = { client: "c1", user: "", expires_in: null, ping_interval: 25, channels: [] };

// The connection is lost (1006); the reconnect timer fires; the new socket connects.
async function reconnect(ws, clock, whileLost = () => {}) {
  ws.lose();
  whileLost();
  clock.advance(0);
  await flush();
  const next = ScriptedSocket.all.at(-1);
  assert.notEqual(next, ws);
  next.open();
  next.answer("connect", { ...CONNECTED, client: "c2" });
  await flush();
  return next;
}

async function connected(clock) {
  const rws = new RocketWS("ws://scripted/", { WebSocket: ScriptedSocket, timers: clock, now: clock.now, random: () => 0 });
  const got = [];
  const contexts = [];
  const sub = rws.subscribe("room", { onMessage: (m) => got.push(m.data), onSubscribed: (c) => contexts.push(c) });
  await flush();
  const ws = ScriptedSocket.all.at(-1);
  ws.open();
  ws.answer("connect", CONNECTED);
  await flush();
  return { rws, sub, got, contexts, ws };
}

test("pushes are de-duplicated by offset; a reconnect recovers from the last offset and epoch", async () => {
  const clock = new FakeClock();
  const { rws, sub, got, contexts, ws } = await connected(clock);
  const first = ws.answer("subscribe", { channel: "room", subscribed: true, recovered: false, epoch: "e1", offset: 5, publications: [] });
  assert.deepEqual(first.params, { channel: "room" }); // nothing to recover yet
  await flush();
  assert.deepEqual(contexts, [{ wasRecovering: false, recovered: false, recoveredCount: 0, epochChanged: false }]);
  for (const offset of [6, 7, 7, 6, 5]) ws.push(message(offset));
  assert.deepEqual(got, ["m6", "m7"]);
  assert.deepEqual([sub.offset, sub.epoch], [7, "e1"]);

  const ws2 = await reconnect(ws, clock, () => assert.equal(sub.state, "subscribing"));
  // A live push that arrives before the subscribe answer waits for it, then is de-duplicated.
  ws2.push(message(10));
  const again = ws2.answer("subscribe", {
    channel: "room",
    subscribed: true,
    recovered: true,
    epoch: "e1",
    offset: 10,
    publications: [7, 8, 9, 10].map((offset) => ({ data: `m${offset}`, offset, ts: 1 })),
  });
  assert.deepEqual(again.params, { channel: "room", recover: { offset: 7, epoch: "e1" } });
  await flush();
  assert.deepEqual(got, ["m6", "m7", "m8", "m9", "m10"]);
  assert.deepEqual(contexts[1], { wasRecovering: true, recovered: true, recoveredCount: 3, epochChanged: false });
  assert.equal(sub.state, "subscribed");
  ws2.push(message(11));
  assert.deepEqual(got.at(-1), "m11");
  rws.close();
});

test("a recovery that cannot be complete reports recovered false and moves to the new position", async () => {
  const clock = new FakeClock();
  const { rws, sub, got, contexts, ws } = await connected(clock);
  ws.answer("subscribe", { channel: "room", subscribed: true, recovered: false, epoch: "e1", offset: 3, publications: [] });
  await flush();
  ws.push(message(4));
  const ws2 = await reconnect(ws, clock);
  // The stream lost its past (new epoch): no publications, the current top.
  ws2.answer("subscribe", { channel: "room", subscribed: true, recovered: false, epoch: "e2", offset: 2, publications: [] });
  await flush();
  assert.deepEqual(contexts[1], { wasRecovering: true, recovered: false, recoveredCount: 0, epochChanged: true });
  assert.deepEqual([sub.offset, sub.epoch], [2, "e2"]);
  ws2.push(message(3, "e2")); // offset 3 of the new epoch is new, though 3 was seen in e1
  assert.deepEqual(got, ["m4", "m3"]);
  rws.close();
});

test("without history (no offsets) every push is delivered and no recovery is asked", async () => {
  const clock = new FakeClock();
  const { rws, got, ws } = await connected(clock);
  ws.answer("subscribe", { channel: "room", subscribed: true });
  await flush();
  for (let i = 0; i < 3; i++) ws.push({ jsonrpc: "2.0", method: "message", params: { channel: "room", data: "same" } });
  assert.deepEqual(got, ["same", "same", "same"]);
  const ws2 = await reconnect(ws, clock);
  assert.deepEqual(ws2.answer("subscribe", { channel: "room", subscribed: true }).params, { channel: "room" });
  rws.close();
});
