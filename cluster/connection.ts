// Connecting to Redis: `redis://[[user]:password@]HOST[:PORT][/DB]` (rediss:// for TLS), the
// ioredis options BullMQ needs, a fail-fast check at start-up (RedisUnavailableError, which the
// CLI turns into exit code 3), and reconnection with back-off during a run, reported through a
// status callback (connected / reconnecting(attempt, delay) / ready) and a one-line summary.
import { Redis, type RedisOptions } from 'ioredis';

export class RedisUrlError extends Error {
  override name = 'RedisUrlError';
}

/** Redis could not be reached (or refused us) at start-up. `url` has no password. */
export class RedisUnavailableError extends Error {
  override name = 'RedisUnavailableError';
  constructor(
    readonly url: string,
    cause: string,
  ) {
    super(`cannot reach Redis at ${url}: ${cause}`);
  }
}

export interface RedisTarget {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls: boolean;
  /** The URL for messages and logs: the password is never shown. */
  display: string;
}

export function parseRedisUrl(raw: string): RedisTarget {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new RedisUrlError(`not a Redis URL: ${JSON.stringify(raw)} (expected redis://HOST:PORT[/DB])`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new RedisUrlError(`Redis URL must start with redis:// or rediss://, got ${JSON.stringify(raw)}`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new RedisUrlError(`Redis URL has no host: ${JSON.stringify(raw)}`);
  const port = u.port === '' ? 6379 : Number(u.port);
  const dbText = u.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^\d{1,5}$/.test(dbText)) throw new RedisUrlError(`Redis URL database must be a number, got ${JSON.stringify(dbText)}`);
  const db = dbText === '' ? 0 : Number(dbText);
  const username = u.username ? decodeURIComponent(u.username) : undefined;
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  const auth = password !== undefined ? `${username ?? ''}:***@` : username ? `${username}@` : '';
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return { host, port, db, username, password, tls: u.protocol === 'rediss:', display: `${u.protocol}//${auth}${hostPart}:${port}/${db}` };
}

export type RedisStatus =
  { state: 'connected' } | { state: 'ready' } | { state: 'reconnecting'; attempt: number; delayMs: number; error?: string } | { state: 'closed' };

/** Back-off between reconnect attempts: 100 ms doubling to 5 s. */
export function reconnectDelay(attempt: number): number {
  return Math.min(5000, 100 * 2 ** Math.min(attempt - 1, 6));
}

export interface ConnectOptions {
  onStatus?: (s: RedisStatus) => void;
  /** CLIENT SETNAME, to tell the connections apart in `redis-cli client list`. */
  connectionName?: string;
  /**
   * For a connection that serves requests (a front end): a command fails at once while Redis is
   * not connected, and a command in flight when the connection drops fails then, and is never
   * sent again after the reconnect. A request can answer 503 promptly, and once it has answered,
   * nothing it started is still pending somewhere (which is what makes "not queued" a true
   * answer). Without it commands wait through the outage (workers: a lock renewal or a history
   * write should be delayed, not lost).
   */
  failFast?: boolean;
}

/**
 * ioredis options for a long-lived connection. maxRetriesPerRequest null: commands wait through
 * a reconnect instead of failing (BullMQ requires it for workers; a lock renewal or a history
 * write should be delayed, not lost), unless `failFast` (see ConnectOptions). retryStrategy never
 * gives up: a worker or front end keeps trying while Redis is down and says so through onStatus.
 * `lastError` supplies the reason shown with "reconnecting" (connect() feeds it from the
 * connection's error events).
 */
export function redisOptions(t: RedisTarget, o: ConnectOptions = {}, lastError: () => string | undefined = () => undefined): RedisOptions {
  return {
    host: t.host,
    port: t.port,
    db: t.db,
    username: t.username,
    password: t.password,
    tls: t.tls ? {} : undefined,
    // failFast: 0 retries rejects the commands in flight at the first disconnect (ioredis flushes
    // them before any resend), no offline queue rejects new ones until 'ready', and no resend
    // is the same promise stated outright.
    maxRetriesPerRequest: o.failFast ? 0 : null,
    enableOfflineQueue: !o.failFast,
    autoResendUnfulfilledCommands: !o.failFast,
    enableReadyCheck: true,
    connectionName: o.connectionName,
    retryStrategy: (attempt) => {
      const delayMs = reconnectDelay(attempt);
      o.onStatus?.({ state: 'reconnecting', attempt, delayMs, error: lastError() });
      return delayMs;
    },
  };
}

/** A long-lived connection with status reporting. Errors are reported, never thrown at the process. */
export function connect(t: RedisTarget, o: ConnectOptions = {}): Redis {
  let lastError: string | undefined;
  const r = new Redis(redisOptions(t, o, () => lastError));
  r.on('error', (e: Error) => {
    lastError = e.message;
  });
  r.on('connect', () => o.onStatus?.({ state: 'connected' }));
  r.on('ready', () => {
    lastError = undefined;
    o.onStatus?.({ state: 'ready' });
  });
  r.on('end', () => o.onStatus?.({ state: 'closed' }));
  return r;
}

/**
 * The start-up check: one connection attempt, PING, within `timeoutMs`. Throws
 * RedisUnavailableError naming the URL (refused, unknown host, timeout, wrong password...).
 */
export async function checkRedis(t: RedisTarget, timeoutMs = 3000): Promise<void> {
  const r = new Redis({
    host: t.host,
    port: t.port,
    db: t.db,
    username: t.username,
    password: t.password,
    tls: t.tls ? {} : undefined,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  let lastError: Error | undefined;
  r.on('error', (e: Error) => {
    lastError = e;
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    await Promise.race([
      (async () => {
        await r.connect();
        const pong = await r.ping();
        if (pong !== 'PONG') throw new Error(`unexpected PING reply ${JSON.stringify(pong)}`);
      })(),
      timeout,
    ]);
  } catch (e) {
    const err = lastError ?? (e as Error);
    const code = (err as NodeJS.ErrnoException).code;
    throw new RedisUnavailableError(t.display, code && !err.message.includes(code) ? `${code} ${err.message}` : err.message);
  } finally {
    clearTimeout(timer);
    r.disconnect();
  }
}

/** The CLI's status line, e.g. "redis redis://h:6379/0: reconnecting (attempt 3, next try in 400 ms: ECONNREFUSED)". */
export function statusLine(display: string, s: RedisStatus): string {
  switch (s.state) {
    case 'connected':
      return `redis ${display}: connected`;
    case 'ready':
      return `redis ${display}: ready`;
    case 'closed':
      return `redis ${display}: closed`;
    case 'reconnecting':
      return `redis ${display}: reconnecting (attempt ${s.attempt}, next try in ${s.delayMs} ms${s.error ? `: ${s.error}` : ''})`;
  }
}
