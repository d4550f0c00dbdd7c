// The server's recent log lines, for ComfyUI's /internal/logs, /internal/logs/raw and the `logs`
// WebSocket messages its frontend's terminal panel subscribes to (PATCH /internal/logs/subscribe).
// ComfyUI captures its whole stdout/stderr; here the lines the server itself logs through
// `state.log` (warnings, errors, start-up notes) are recorded, which is what a user needs to see.

export interface LogEntry {
  /** ISO timestamp, as ComfyUI's app/logger.py records it. */
  t: string;
  /** The message, newline-terminated like a captured stream write. */
  m: string;
}

type Logger = { info: (...a: never[]) => void; warn: (...a: never[]) => void; error: (...a: never[]) => void };

const MAX_ENTRIES = 300;

export class LogRing {
  private readonly entries: LogEntry[] = [];
  private readonly listeners = new Set<(e: LogEntry) => void>();

  push(message: string): void {
    const entry = { t: new Date().toISOString(), m: message.endsWith('\n') ? message : `${message}\n` };
    this.entries.push(entry);
    // ComfyUI keeps a bounded deque too; the frontend only shows the tail.
    if (this.entries.length > MAX_ENTRIES) this.entries.shift();
    for (const l of this.listeners) l(entry);
  }

  list(): LogEntry[] {
    return [...this.entries];
  }

  onEntry(fn: (e: LogEntry) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

const rings = new WeakMap<object, LogRing>();

/** One ring per server state, created on first use, so routes and index.ts share it. */
export function logRingFor(owner: object): LogRing {
  let r = rings.get(owner);
  if (!r) {
    r = new LogRing();
    rings.set(owner, r);
  }
  return r;
}

function text(args: unknown[]): string {
  return args
    .map((a) =>
      a instanceof Error
        ? (a.stack ?? a.message)
        : typeof a === 'string'
          ? a
          : (() => {
              try {
                return JSON.stringify(a);
              } catch {
                return String(a);
              }
            })(),
    )
    .join(' ');
}

/** A logger that records every info/warn/error line in `ring` before passing it on. */
export function teeLogger<L extends Logger>(logger: L, ring: LogRing): Pick<L, 'info' | 'warn' | 'error'> {
  const wrap = (level: 'info' | 'warn' | 'error') =>
    ((...args: unknown[]) => {
      ring.push(`${level}: ${text(args)}`);
      (logger[level] as (...a: unknown[]) => void).apply(logger, args);
    }) as L[typeof level];
  return { info: wrap('info'), warn: wrap('warn'), error: wrap('error') };
}
