// TypeScript declarations for rocketws.js (docs/client-js.md describes the behaviour).

export declare const VERSION: string;

/** An error answer from the server. */
export declare class RpcError extends Error {
  constructor(code: number, message: string, data?: unknown);
  readonly name: "RpcError";
  /** JSON-RPC error code (docs/protocol.md#error-codes). */
  code: number;
  /** The error's `data` member: `{reason, param?, channel?, ...}`. */
  data: any;
}

/** No answer within the call's timeout. */
export declare class TimeoutError extends Error {
  readonly name: "TimeoutError";
}

/** The connection closed before the answer came. */
export declare class DisconnectedError extends Error {
  readonly name: "DisconnectedError";
  /** The close code (1006: the connection was lost). */
  code: number;
  reason: string;
}

export declare const Codes: Readonly<{
  INVALID_TOKEN: -32011;
  TOKEN_EXPIRED: -32012;
  CONNECT_REFUSED: -32013;
  AUTH_UNAVAILABLE: -32014;
  BROKER_UNAVAILABLE: -32002;
  TOO_MANY_REQUESTS: -32029;
}>;

/** Whether a client may reconnect after close `code` (4000-4499 yes, 4500-4999 no, ...). */
export declare function reconnectAllowed(code: number): boolean;

export interface BackoffOptions {
  minDelay?: number;
  maxDelay?: number;
  random?: () => number;
}

/** Full-jitter delay in ms before reconnect attempt `attempt` (0 first). */
export declare function backoff(attempt: number, options?: BackoffOptions): number;

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** What a WebSocket constructor must provide (the browser's, or Node's `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface RocketWSOptions {
  /** A connection token (JWT), sent with `connect`. */
  token?: string;
  /** Gives a token on connect, after an expiry and before one (refresh); "" or null: unauthorized. */
  getToken?: () => string | null | Promise<string | null>;
  /** Client name and version, sent with `connect` (connect proxy, logs). */
  name?: string;
  version?: string;
  /** ms for a call's answer and for the connect handshake (default 10000). */
  timeout?: number;
  /** Reconnect backoff bounds in ms (defaults 500 and 20000). */
  minReconnectDelay?: number;
  maxReconnectDelay?: number;
  /** ms of server silence before the client pings (default: the server's ping_interval, else 25000). */
  pingInterval?: number | null;
  /** ms without any frame after that ping before reconnecting (default 10000). */
  pongTimeout?: number;
  /** Refresh the token this many ms before it expires (default 10000, at most half its life). */
  refreshBefore?: number;
  maxRefreshDelay?: number;
  /** Sec-WebSocket-Protocol offered (default ["rocketws"]). */
  protocols?: string[];
  /** `call` and `subscribe` connect when disconnected (default true). */
  autoConnect?: boolean;
  /** React to offline/online and page visibility in browsers (default true). */
  browserEvents?: boolean;
  /** Injected for Node.js (the `ws` package) and tests. */
  WebSocket?: WebSocketConstructor;
  timers?: Timers;
  random?: () => number;
  now?: () => number;
}

export type ClientState = "disconnected" | "connecting" | "connected" | "closed";
export type SubscriptionState = "unsubscribed" | "subscribing" | "subscribed";

export interface StreamPosition {
  offset: number;
  epoch: string;
}

export interface Publication {
  channel: string;
  data: any;
  ts?: number;
  offset?: number;
  epoch?: string;
  [key: string]: any;
}

export interface SubscribedContext {
  /** A recovery was asked for (the subscription had an offset and epoch). */
  wasRecovering: boolean;
  /** Everything missed was delivered (false after a gap or a new epoch: reload state). */
  recovered: boolean;
  /** Publications delivered by the recovery. */
  recoveredCount: number;
  epochChanged?: boolean;
}

export interface StateContext {
  state: string;
  previous: string;
  [key: string]: any;
}

export interface ClientError {
  type: "connect" | "transport" | "protocol" | "server" | "refresh" | "subscribe" | "handler";
  error: unknown;
  event?: string;
}

export interface SubscriptionOptions {
  onMessage?: (pub: Publication) => void;
  onJoin?: (info: any) => void;
  onLeave?: (info: any) => void;
  onSubscribed?: (ctx: SubscribedContext) => void;
  onUnsubscribed?: (ctx: { reason?: string; error?: unknown }) => void;
  onError?: (err: ClientError) => void;
  onState?: (ctx: StateContext) => void;
  /** Recover missed publications on resubscribe (default true; channels with history). */
  recover?: boolean;
  /** Start from this position (recover from it on the first subscribe). */
  since?: StreamPosition;
  /** A subscription token, or a function giving one per subscribe. */
  token?: string;
  getToken?: (channel: string) => string | Promise<string>;
}

declare class Emitter<Events extends Record<string, (...args: any[]) => void>> {
  on<E extends keyof Events>(event: E, handler: Events[E]): () => void;
  once<E extends keyof Events>(event: E, handler: Events[E]): () => void;
  off<E extends keyof Events>(event: E, handler: Events[E]): void;
}

export interface SubscriptionEvents {
  message: (pub: Publication) => void;
  join: (info: any) => void;
  leave: (info: any) => void;
  subscribed: (ctx: SubscribedContext) => void;
  unsubscribed: (ctx: { reason?: string; error?: unknown }) => void;
  state: (ctx: StateContext) => void;
  error: (err: ClientError) => void;
  [event: string]: (...args: any[]) => void;
}

export declare class Subscription extends Emitter<SubscriptionEvents> {
  readonly client: RocketWS;
  readonly channel: string;
  readonly state: SubscriptionState;
  /** Last offset and epoch seen (null on channels without history). */
  readonly offset: number | null;
  readonly epoch: string | null;
  recover: boolean;
  subscribe(): void;
  unsubscribe(): void;
  ready(timeout?: number): Promise<Subscription>;
  publish(data: unknown): Promise<{ channel: string; delivered: number }>;
  presence(): Promise<any>;
  presenceStats(): Promise<{ num_clients: number; num_users: number }>;
  history(options?: HistoryOptions): Promise<any>;
}

export interface HistoryOptions {
  since?: StreamPosition;
  limit?: number;
  reverse?: boolean;
}

export interface ClientEvents {
  state: (ctx: StateContext) => void;
  connected: (ctx: { client: string | null; user: string | null; channels: string[] }) => void;
  disconnected: (ctx: { code: number; reason: string; reconnect: boolean }) => void;
  reconnecting: (ctx: { code: number; reason: string; delay: number; attempt: number }) => void;
  closed: (ctx: { code: number; reason: string }) => void;
  broadcast: (params: { data: any; ts?: number }) => void;
  message: (pub: Publication) => void;
  subscribed: (params: { channel: string }) => void;
  unsubscribed: (params: { channel: string }) => void;
  join: (info: any) => void;
  leave: (info: any) => void;
  refreshed: (ctx: { expiresIn: number | null }) => void;
  push: (push: { method: string; params: any }) => void;
  error: (err: ClientError) => void;
  [event: string]: (...args: any[]) => void;
}

export type BatchAnswer = { result: any; error?: undefined } | { error: RpcError; result?: undefined };

export declare class RocketWS extends Emitter<ClientEvents> {
  constructor(url: string, options?: RocketWSOptions);
  readonly url: string;
  readonly state: ClientState;
  /** The server's id for this connection, once connected. */
  readonly client: string | null;
  readonly user: string | null;
  /** The code and reason that ended the client in the closed state. */
  readonly closeInfo: { code: number; reason: string } | null;
  connect(): void;
  close(reason?: string): void;
  disconnect(reason?: string): void;
  ready(timeout?: number): Promise<RocketWS>;
  call<T = any>(method: string, params?: unknown, options?: { timeout?: number }): Promise<T>;
  batch(
    calls: Array<{ method: string; params?: unknown } | [string, unknown?]>,
    options?: { timeout?: number },
  ): Promise<BatchAnswer[]>;
  notify(method: string, params?: unknown): boolean;
  subscribe(channel: string, options?: SubscriptionOptions): Subscription;
  getSubscription(channel: string): Subscription | null;
  removeSubscription(sub: Subscription | string): void;
  subscriptions(): Map<string, Subscription>;
  sendData(channel: string, data: unknown): Promise<{ channel: string; delivered: number }>;
  presence(channel: string): Promise<any>;
  presenceStats(channel: string): Promise<{ num_clients: number; num_users: number }>;
  history(channel: string, options?: HistoryOptions): Promise<any>;
  rpc<T = any>(method: string, params?: unknown, options?: { timeout?: number }): Promise<T>;
}

export default RocketWS;
