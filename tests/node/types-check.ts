// Compiled by tsc --noEmit (tests/test_client_js.py): rocketws.d.ts describes the API the
// docs show, and misuse does not type-check.
import { RocketWS, RpcError, Subscription, backoff, reconnectAllowed, type Publication } from "../../clients/js/rocketws.js";

const rws = new RocketWS("ws://127.0.0.1:58000/", { getToken: async () => "token", name: "app", timeout: 5000 });
rws.on("state", (ctx) => console.log(ctx.state, ctx.previous));
rws.on("broadcast", (b) => console.log(b.data));
rws.on("error", (e) => console.log(e.type));
const sub: Subscription = rws.subscribe("chat", {
  onMessage: (pub: Publication) => console.log(pub.channel, pub.data, pub.offset),
  onSubscribed: ({ wasRecovering, recovered, recoveredCount }) => console.log(wasRecovering, recovered, recoveredCount),
  recover: true,
});

async function main(): Promise<void> {
  await rws.ready(1000);
  const pong: string = await rws.call<string>("ping", undefined, { timeout: 100 });
  const answers = await rws.batch([["ping"], { method: "subscriptions" }]);
  for (const a of answers) if (a.error) console.log(a.error.code, a.error.data);
  const sent = await sub.publish({ text: "hi" });
  console.log(pong, sent.delivered, sub.state === "subscribed", sub.offset, backoff(2), reconnectAllowed(4501));
  try {
    await rws.rpc("page.get", { name: "about" });
  } catch (err) {
    if (err instanceof RpcError) console.log(err.code, err.message);
  }
  const stats = await rws.presenceStats("chat");
  console.log(stats.num_clients);
  // @ts-expect-error: the state is one of four names
  const wrong: "open" = rws.state;
  // @ts-expect-error: subscribe takes a channel name
  rws.subscribe(42);
  console.log(wrong);
}
void main();
