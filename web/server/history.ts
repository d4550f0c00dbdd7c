// Completed jobs (success, error, interrupted), persisted one JSON file per entry under
// <user-dir>/history/ so they survive restarts; the newest `maxItems` are kept. File names are a
// sequence number (completion order), never the client-chosen prompt id.
import fs from 'node:fs';
import path from 'node:path';
import { parseJsonExact, stringifyJson } from '../../engine/json.ts';
import { writeFileAtomic } from '../../nodes/image/paths.ts';
import type { HistoryEntry, StatusMessage } from '../../host/types.ts';

export type { HistoryEntry, StatusMessage };

interface Stored {
  seq: number;
  promptId: string;
  entry: HistoryEntry;
}

const FILE_RE = /^(\d{12})\.json$/;

export class HistoryStore {
  private readonly dir: string;
  /** Insertion-ordered: oldest first. */
  private readonly entries = new Map<string, Stored>();
  private seq = 0;

  constructor(
    userDir: string,
    private readonly maxItems: number,
  ) {
    if (!Number.isInteger(maxItems) || maxItems < 1) throw new Error(`history max items must be a positive integer, got ${maxItems}`);
    this.dir = path.join(userDir, 'history');
    fs.mkdirSync(this.dir, { recursive: true });
    this.load();
  }

  private load(): void {
    const files = fs
      .readdirSync(this.dir)
      .filter((f) => FILE_RE.test(f))
      .sort();
    for (const f of files) {
      const seq = Number(FILE_RE.exec(f)![1]);
      this.seq = Math.max(this.seq, seq + 1);
      try {
        const parsed = parseJsonExact(fs.readFileSync(path.join(this.dir, f), 'utf8')) as { promptId?: unknown; entry?: HistoryEntry };
        if (typeof parsed.promptId !== 'string' || typeof parsed.entry !== 'object' || parsed.entry === null) throw new Error('missing promptId/entry');
        const old = this.entries.get(parsed.promptId);
        if (old) this.removeFile(old.seq);
        this.entries.delete(parsed.promptId);
        this.entries.set(parsed.promptId, { seq, promptId: parsed.promptId, entry: parsed.entry });
      } catch (e) {
        // A corrupt entry must not stop the server; it is moved aside for inspection.
        process.emitWarning(`history: ignoring unreadable ${f}: ${(e as Error).message}`);
        fs.renameSync(path.join(this.dir, f), path.join(this.dir, f + '.corrupt'));
      }
    }
    this.prune();
  }

  private file(seq: number): string {
    return path.join(this.dir, String(seq).padStart(12, '0') + '.json');
  }

  private removeFile(seq: number): void {
    fs.rmSync(this.file(seq), { force: true });
  }

  private prune(): void {
    while (this.entries.size > this.maxItems) {
      const [id, oldest] = this.entries.entries().next().value as [string, Stored];
      this.entries.delete(id);
      this.removeFile(oldest.seq);
    }
  }

  /** Adds (or, for a reused prompt id, replaces) an entry as the newest. */
  add(promptId: string, entry: HistoryEntry): void {
    const old = this.entries.get(promptId);
    if (old) {
      this.entries.delete(promptId);
      this.removeFile(old.seq);
    }
    const seq = this.seq++;
    writeFileAtomic(this.file(seq), stringifyJson({ promptId, entry }));
    this.entries.set(promptId, { seq, promptId, entry });
    this.prune();
  }

  get(promptId: string): HistoryEntry | undefined {
    return this.entries.get(promptId)?.entry;
  }

  has(promptId: string): boolean {
    return this.entries.has(promptId);
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * ComfyUI's listing: oldest first; with maxItems only, the last maxItems; with an offset, from
   * that index on, at most maxItems.
   */
  list(maxItems?: number, offset?: number): Record<string, HistoryEntry> {
    const all = [...this.entries.values()];
    let start = offset ?? -1;
    if (start < 0 && maxItems !== undefined) start = all.length - maxItems;
    start = Math.max(0, start);
    const end = maxItems === undefined ? all.length : Math.min(all.length, start + maxItems);
    const out: Record<string, HistoryEntry> = {};
    for (const s of all.slice(start, end)) out[s.promptId] = s.entry;
    return out;
  }

  delete(ids: readonly string[]): void {
    for (const id of ids) {
      const s = this.entries.get(id);
      if (!s) continue;
      this.entries.delete(id);
      this.removeFile(s.seq);
    }
  }

  clear(): void {
    this.delete([...this.entries.keys()]);
  }
}
