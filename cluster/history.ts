// History in Redis, the cluster's counterpart of web/server/history.ts HistoryStore: the same
// methods and entry shapes, async. Entries are JSON (engine/json.ts: 64-bit seeds stay exact) in
// a hash, ordered by a completion sequence in a sorted set; the newest `maxItems` are kept.
//
// add() is first-write-wins per prompt_id, and can be guarded by the job's BullMQ lock: a worker
// records a result only while it still holds the job, so a job re-run after its worker was
// presumed dead can never get two entries (see worker.ts, "exactly once").
import type { Redis } from 'ioredis';
import { parseJsonExact, stringifyJson } from '../engine/json.ts';
import type { HistoryEntry } from '../host/types.ts';
import type { ClusterKeys } from './keys.ts';
import { LuaScript } from './script.ts';

export type { HistoryEntry };

/** 'added': this call wrote it. 'exists': an entry was already there (kept). 'lock-lost': the
 *  guard's lock is no longer ours (another worker took the job): nothing written. */
export type HistoryAddResult = 'added' | 'exists' | 'lock-lost';

// KEYS: history hash, order zset, seq counter, ids hash, lock key (or '' unguarded)
// ARGV: prompt id, entry JSON, max items, lock token (or '')
const ADD = new LuaScript(`
if ARGV[4] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[4] then return 'lock-lost' end
local had = redis.call('HGET', KEYS[1], ARGV[1])
if had then
  -- The same entry again: a reply lost in a reconnect and the command resent, not a second write.
  if had == ARGV[2] then return 'added' end
  return 'exists'
end
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], '1')
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  redis.call('HDEL', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[4], unpack(old))
end
return 'added'
`);

// KEYS: history hash, order zset, ids hash. ARGV: prompt ids.
const DELETE = new LuaScript(`
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[2], id) == 1 then
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
return 1
`);

export class RedisHistory {
  constructor(
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
    private readonly maxItems: number,
  ) {
    if (!Number.isInteger(maxItems) || maxItems < 1) throw new Error(`history max items must be a positive integer, got ${maxItems}`);
  }

  /**
   * Adds an entry as the newest unless the prompt id already has one (first write wins).
   * `guard`: write only while `token` holds the job's BullMQ lock.
   */
  async add(promptId: string, entry: HistoryEntry, guard?: { token: string }): Promise<HistoryAddResult> {
    const k = this.keys;
    const r = await ADD.run(
      this.redis,
      [k.history, k.historyOrder, k.historySeq, k.ids, guard ? k.lock(promptId) : k.lock('')],
      [promptId, stringifyJson(entry), this.maxItems, guard?.token ?? ''],
    );
    return r as HistoryAddResult;
  }

  async get(promptId: string): Promise<HistoryEntry | undefined> {
    const raw = await this.redis.hget(this.keys.history, promptId);
    return raw === null ? undefined : (parseJsonExact(raw) as HistoryEntry);
  }

  async has(promptId: string): Promise<boolean> {
    return (await this.redis.hexists(this.keys.history, promptId)) === 1;
  }

  async size(): Promise<number> {
    return this.redis.zcard(this.keys.historyOrder);
  }

  /**
   * ComfyUI's listing, as HistoryStore.list: oldest first; with maxItems only, the last
   * maxItems; with an offset, from that index on, at most maxItems.
   */
  async list(maxItems?: number, offset?: number): Promise<Record<string, HistoryEntry>> {
    const total = await this.size();
    let start = offset ?? -1;
    if (start < 0 && maxItems !== undefined) start = total - maxItems;
    start = Math.max(0, start);
    const end = maxItems === undefined ? total : Math.min(total, start + maxItems);
    const out: Record<string, HistoryEntry> = {};
    if (end <= start) return out;
    const ids = await this.redis.zrange(this.keys.historyOrder, start, end - 1);
    if (ids.length === 0) return out;
    const raws = await this.redis.hmget(this.keys.history, ...ids);
    ids.forEach((id, i) => {
      // Pruned between the two reads: skipped, as if listed a moment later.
      const raw = raws[i];
      if (raw !== null) out[id] = parseJsonExact(raw) as HistoryEntry;
    });
    return out;
  }

  async delete(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const k = this.keys;
    await DELETE.run(this.redis, [k.history, k.historyOrder, k.ids], ids);
  }

  async clear(): Promise<void> {
    // In batches: one script call stays short even with a large history.
    for (;;) {
      const ids = await this.redis.zrange(this.keys.historyOrder, 0, 499);
      if (ids.length === 0) return;
      await this.delete(ids);
    }
  }
}
