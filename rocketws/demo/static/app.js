// The RocketWS demo app: sign-in, rooms chat with history and recovery, who is online,
// and pages fetched over the open WebSocket (rpc -> the server's RPC proxy -> the demo
// backend).  Plain browser JavaScript; the client is the server's own /rocketws.js.
const { RocketWS, RpcError } = await import(window.DEMO.client);

const config = window.DEMO;
const params = new URLSearchParams(location.search);
const wsUrl = params.get("ws") || config.ws; // ?ws=... lets a test route through a relay
const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), attrs);
  node.append(...children);
  return node;
};

const app = {
  user: sessionStorage.getItem("demo.user"),
  rws: null,
  page: "chat",
  room: null,
  sub: null,
  messages: new Map(), // room -> Map(message id -> message)
  online: new Map(), // room -> Map(client -> user)
  presence: true,
  recoveries: [],
};
window.demoApp = app; // for tests and the curious

async function signIn(user) {
  const resp = await fetch("/api/sign-in", { method: "POST", body: JSON.stringify({ user }) });
  if (!resp.ok) throw new Error(`sign-in refused: ${resp.status}`);
  return (await resp.json()).token;
}

function notice(text) {
  const box = $("#notice");
  box.textContent = text;
  box.hidden = false;
}

function renderHeader() {
  const nav = $("#nav");
  nav.replaceChildren();
  for (const [name, label] of [["chat", "Chat"], ["about", "About"], ["help", "Help"]]) {
    const link = el("a", { href: `#${name}`, textContent: label, className: app.page === name ? "active" : "" });
    link.dataset.page = name;
    link.onclick = (e) => {
      e.preventDefault();
      show(name);
    };
    nav.append(link);
  }
  $("#me").textContent = app.user ? `signed in as ${app.user}` : "";
  if (app.user) {
    const out = el("a", { href: "#", textContent: "sign out" });
    out.onclick = (e) => {
      e.preventDefault();
      sessionStorage.removeItem("demo.user");
      location.reload();
    };
    $("#me").append(" ", out);
  }
}

function renderSignIn() {
  const box = el("div", { className: "signin" }, el("h2", { textContent: "Sign in" }));
  box.append(el("p", { className: "muted", textContent: "Demo users, no password:" }));
  for (const user of config.users) {
    const button = el("button", { textContent: user });
    button.dataset.user = user;
    button.onclick = () => start(user);
    box.append(button);
  }
  $("#view").replaceChildren(box);
}

function start(user) {
  app.user = user;
  sessionStorage.setItem("demo.user", user);
  const rws = (app.rws = new RocketWS(wsUrl, {
    name: "rocketws-demo",
    getToken: () => signIn(user), // on connect, after an expiry, and to refresh
    minReconnectDelay: 300,
    maxReconnectDelay: 5000,
  }));
  rws.on("state", ({ state }) => {
    const badge = $("#state");
    badge.textContent = state;
    badge.className = `state ${state}`;
  });
  rws.on("closed", ({ code, reason }) => notice(`disconnected for good: ${code} ${reason}`));
  rws.connect();
  renderHeader();
  show("chat");
}

async function show(page) {
  app.page = page;
  renderHeader();
  if (page === "chat") {
    renderChat();
    enterRoom(app.room || config.rooms[0]);
    return;
  }
  $("#view").replaceChildren(el("p", { className: "muted", textContent: "loading…" }));
  try {
    // The page travels over the WebSocket: rpc -> RPC proxy -> demo backend.
    const answer = await app.rws.rpc("page.get", { name: page });
    const body = el("div", { className: "panel" }, el("h2", { textContent: answer.title }));
    body.insertAdjacentHTML("beforeend", answer.html);
    body.append(el("p", { className: "muted", textContent: "fetched over the WebSocket (rpc)" }));
    $("#view").replaceChildren(body);
  } catch (err) {
    const text = err instanceof RpcError && err.code === -32601 ? "this server has no RPC proxy" : String(err.message);
    $("#view").replaceChildren(el("p", { textContent: `page unavailable: ${text}` }));
  }
}

function renderChat() {
  const rooms = el("div", { className: "panel rooms" }, el("h3", { textContent: "Rooms" }));
  for (const room of config.rooms) {
    const link = el("a", { href: "#", textContent: room.split(":")[1] });
    link.dataset.room = room;
    link.onclick = (e) => {
      e.preventDefault();
      enterRoom(room);
    };
    rooms.append(link);
  }
  const input = el("input", { placeholder: "message", autocomplete: "off", id: "text" });
  const form = el("form", { className: "send" }, input, el("button", { textContent: "Send" }));
  form.onsubmit = (e) => {
    e.preventDefault();
    if (input.value.trim()) send(input.value.trim());
    input.value = "";
  };
  const messages = el("div", { className: "panel messages" }, el("h3", { id: "room-title" }), el("ul", { className: "log", id: "log" }), form);
  const online = el("div", { className: "panel online" }, el("h3", { textContent: "Online" }), el("ul", { id: "online" }));
  $("#view").replaceChildren(el("div", { className: "chat" }, rooms, messages, online));
}

function roomMessages(room) {
  if (!app.messages.has(room)) app.messages.set(room, new Map());
  return app.messages.get(room);
}

// Every message has an id made by its sender: history, recovered and live copies of one
// message are shown once.
function addMessage(room, data, render = true) {
  if (!data || typeof data !== "object" || !data.id) return false;
  const list = roomMessages(room);
  if (list.has(data.id)) return false;
  list.set(data.id, data);
  if (render && room === app.room) renderMessages();
  return true;
}

function renderMessages() {
  const log = $("#log");
  if (!log) return;
  log.replaceChildren(
    ...[...roomMessages(app.room).values()].map((m) =>
      el("li", {}, el("span", { className: "who", textContent: m.user }), el("span", { className: "text", textContent: m.text })),
    ),
  );
  log.scrollTop = log.scrollHeight;
}

function renderOnline() {
  const list = $("#online");
  if (!list) return;
  if (!app.presence) {
    list.replaceChildren(el("li", { className: "muted", textContent: "needs a server with presence" }));
    return;
  }
  const users = [...new Set((app.online.get(app.room) ?? new Map()).values())].sort();
  list.replaceChildren(...users.map((u) => el("li", { textContent: u, className: "user" })));
}

async function refreshPresence(room) {
  try {
    const answer = await app.rws.presence(room);
    const clients = new Map(Object.values(answer.clients ?? {}).map((c) => [c.client, c.user]));
    app.online.set(room, clients);
  } catch (err) {
    if (err instanceof RpcError && (err.code === -32601 || err.code === -32005)) app.presence = false;
  }
  if (room === app.room) renderOnline();
}

async function loadHistory(room) {
  try {
    const answer = await app.rws.history(room, { limit: 50, reverse: true });
    for (const pub of [...(answer.publications ?? [])].reverse()) addMessage(room, pub.data, false);
  } catch {
    // a server without history: live messages only
  }
  if (room === app.room) renderMessages();
}

async function enterRoom(room) {
  if (app.sub && app.sub.channel !== room) app.rws.removeSubscription(app.sub);
  app.room = room;
  for (const link of document.querySelectorAll(".rooms a")) link.classList.toggle("active", link.dataset.room === room);
  $("#room-title").textContent = `# ${room.split(":")[1]}`;
  renderMessages();
  renderOnline();
  if (app.sub && app.sub.channel === room) return;
  let recoveredNew = 0; // messages a recovery brought that this page had not shown
  const sub = (app.sub = app.rws.subscribe(room, {
    onMessage: (pub) => {
      if (addMessage(room, pub.data) && sub.state === "subscribing") recoveredNew += 1;
    },
    onJoin: (j) => {
      (app.online.get(room) ?? app.online.set(room, new Map()).get(room)).set(j.client, j.user);
      renderOnline();
    },
    onLeave: (l) => {
      app.online.get(room)?.delete(l.client);
      renderOnline();
    },
    onSubscribed: (ctx) => {
      const fresh = recoveredNew;
      recoveredNew = 0;
      if (ctx.wasRecovering) {
        app.recoveries.push({ ...ctx, fresh });
        // recoveredCount includes this page's own messages (send_data skips the sender).
        if (ctx.recovered) notice(`reconnected, recovered ${fresh} messages`);
        else {
          notice("reconnected; some messages were too old to recover: history reloaded");
          loadHistory(room);
        }
      } else {
        loadHistory(room);
      }
      refreshPresence(room);
    },
  }));
  await sub.ready().catch(() => {});
}

// A message goes to the backend, which emits it to the room: so it is in the room's
// history with an offset, and comes back to everyone, the sender too.
let sending = Promise.resolve(); // one message at a time: they arrive in the order typed
function send(text) {
  sending = sending.then(() => sendNow(text));
}

async function sendNow(text) {
  const message = { room: app.room, text, id: `${app.user}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}` };
  try {
    await app.rws.rpc("chat.send", message); // over the WebSocket, through the RPC proxy
  } catch (err) {
    if (!(err instanceof RpcError && err.code === -32601)) return notice(`not sent: ${err.message}`);
    const resp = await fetch("/api/send", {
      method: "POST",
      headers: { Authorization: `Bearer ${await signIn(app.user)}` },
      body: JSON.stringify(message),
    });
    if (!resp.ok) notice(`not sent: ${resp.status}`);
  }
}

renderHeader();
if (app.user) start(app.user);
else renderSignIn();
