// Exact big integers (engine/json.ts, coerceInt, INT ranges beyond 2^53), the validateInputs
// hook, and progress_state's size on large jobs.
import { describe, expect, test } from 'vitest';
import { defineNode, Executor, NodeRegistry, validatePrompt, type EngineEvent } from '../../engine/index.ts';
import { coerceInt } from '../../engine/coerce.ts';
import { parseJsonExact, stringifyJson } from '../../engine/json.ts';

describe('parseJsonExact / stringifyJson', () => {
  test('integers beyond 2^53 - 1 become exact BigInts; everything else is JSON.parse', () => {
    const v = parseJsonExact(
      '{"a":18446744073709551615,"b":9007199254740993,"c":9007199254740991,"d":-9007199254740993,"e":1.5e300,"f":"18446744073709551615","g":[123456789012345678901234567890]}',
    ) as Record<string, unknown>;
    expect(v.a).toBe(18446744073709551615n);
    expect(v.b).toBe(9007199254740993n);
    expect(v.c).toBe(9007199254740991);
    expect(v.d).toBe(-9007199254740993n);
    expect(v.e).toBe(1.5e300);
    expect(v.f).toBe('18446744073709551615');
    expect(v.g).toEqual([123456789012345678901234567890n]);
  });

  test('numbers inside strings and keys are left alone; bad JSON and deep nesting still fail', () => {
    expect(parseJsonExact('{"18446744073709551615":"x 18446744073709551615 \\" 99999999999999999"}')).toEqual({
      '18446744073709551615': 'x 18446744073709551615 " 99999999999999999',
    });
    expect(() => parseJsonExact('{"a":18446744073709551615,')).toThrow(expect.objectContaining({ code: 'invalid_json' }));
    expect(() => parseJsonExact('[01234567890123456789]')).toThrow(expect.objectContaining({ code: 'invalid_json' }));
    expect(() => parseJsonExact('['.repeat(10) + ']'.repeat(10), 5)).toThrow(expect.objectContaining({ code: 'json_too_deep' }));
  });

  test('a client string cannot pass for a marked literal', () => {
    const text = '{"s":"\\u0000bigint:5"}';
    expect(parseJsonExact(`{"n":18446744073709551615,"s":"\\u0000bigint:5"}`)).toEqual({ n: 18446744073709551615n, s: '\u0000bigint:5' });
    expect(parseJsonExact(text)).toEqual({ s: '\u0000bigint:5' });
  });

  test('stringifyJson writes BigInts as digits and round-trips', () => {
    const v = { seed: 18446744073709551615n, n: [-(2n ** 70n), 1], s: 'x' };
    const text = stringifyJson(v);
    expect(text).toBe('{"seed":18446744073709551615,"n":[-1180591620717411303424,1],"s":"x"}');
    expect(parseJsonExact(text)).toEqual(v);
    expect(stringifyJson({ a: 1 })).toBe('{"a":1}');
  });
});

describe('coerceInt', () => {
  test('is exact beyond 2^53 and keeps small values as numbers', () => {
    expect(coerceInt(18446744073709551615n)).toEqual({ ok: true, value: 18446744073709551615n });
    expect(coerceInt(5n)).toEqual({ ok: true, value: 5 });
    expect(coerceInt('9007199254740993')).toEqual({ ok: true, value: 9007199254740993n });
    expect(coerceInt(' 42 ')).toEqual({ ok: true, value: 42 });
    // Python's int(1.8446744073709552e19) is the double's exact value.
    expect(coerceInt(1.8446744073709552e19)).toEqual({ ok: true, value: 18446744073709551616n });
    expect(coerceInt('9'.repeat(5000)).ok).toBe(false);
  });
});

const registry = new NodeRegistry().registerAll([
  defineNode({
    name: 'Seed',
    outputNode: true,
    inputs: { required: { seed: { type: 'INT', default: 0, min: 0, max: 0xffffffffffffffffn } } },
    outputs: [],
    run: ({ seed }) => ({ ui: { seed: [seed] } }),
  }),
  defineNode({
    name: 'Named',
    outputNode: true,
    inputs: { required: { name: { type: 'STRING', default: 'ok' }, n: { type: 'INT', default: 1 } } },
    outputs: [],
    validateInputs: ({ name }) => (name === 'bad' ? { name: 'must not be "bad"' } : undefined),
    run: () => ({ ui: {} }),
  }),
  defineNode({ name: 'Step', inputs: { required: { x: { type: 'INT', default: 0 } } }, outputs: [{ name: 'INT', type: 'INT' }], run: ({ x }) => [x] }),
  defineNode({ name: 'Link', inputs: { required: { x: 'INT' } }, outputs: [{ name: 'INT', type: 'INT' }], run: ({ x }) => [x] }),
  defineNode({ name: 'Sink', outputNode: true, inputs: { required: { x: 'INT' } }, outputs: [], run: () => ({ ui: {} }) }),
]);

describe('INT ranges beyond 2^53', () => {
  test('2^64 - 1 passes and stays exact; 2^64 is value_bigger_than_max', () => {
    const ok = validatePrompt({ '1': { class_type: 'Seed', inputs: { seed: 18446744073709551615n } } }, registry);
    expect(ok.ok && ok.prompt['1'].inputs.seed).toBe(18446744073709551615n);
    const over = validatePrompt({ '1': { class_type: 'Seed', inputs: { seed: 18446744073709551616n } } }, registry);
    expect(over.ok).toBe(false);
    const e = over.node_errors['1'].errors[0];
    expect(e.type).toBe('value_bigger_than_max');
    expect(e.message).toBe('Value 18446744073709551616 bigger than max of 18446744073709551615');
    expect(e.extra_info).toMatchObject({ input_name: 'seed', received_value: 18446744073709551616n });
  });

  test('the exact seed reaches run()', async () => {
    const ex = new Executor(registry);
    const r = await ex.execute({ '1': { class_type: 'Seed', inputs: { seed: 9007199254740993n } } }, { promptId: 'p' });
    expect(r.outputs['1'].seed).toEqual([9007199254740993n]);
  });
});

describe('validateInputs', () => {
  test('a reason becomes custom_validation_failed with input_name', () => {
    const v = validatePrompt({ '1': { class_type: 'Named', inputs: { name: 'bad', n: 1 } } }, registry);
    expect(v.ok).toBe(false);
    expect(v.node_errors['1'].errors).toEqual([
      {
        type: 'custom_validation_failed',
        message: 'Custom validation failed for node',
        details: 'name - must not be "bad"',
        extra_info: expect.objectContaining({ input_name: 'name', received_value: 'bad' }),
      },
    ]);
    expect(validatePrompt({ '1': { class_type: 'Named', inputs: { name: 'fine', n: 1 } } }, registry).ok).toBe(true);
  });
});

describe('progress_state on large jobs', () => {
  const chainPrompt = (n: number) => {
    const p: Record<string, { class_type: string; inputs: Record<string, unknown> }> = { '0': { class_type: 'Step', inputs: { x: n } } };
    for (let i = 1; i < n - 1; i++) p[String(i)] = { class_type: 'Link', inputs: { x: [String(i - 1), 0] } };
    p[String(n - 1)] = { class_type: 'Sink', inputs: { x: [String(n - 2), 0] } };
    return p;
  };
  const nodeEntries = async (n: number, fullMax?: number) => {
    const ex = new Executor(registry, { cache: 'none', progressStateFullMax: fullMax });
    let entries = 0;
    let messages = 0;
    ex.onEvent((e: EngineEvent) => {
      if (e.type !== 'progress_state') return;
      messages++;
      entries += Object.keys(e.data.nodes).length;
    });
    await ex.execute(chainPrompt(n), { promptId: 'p' });
    return { entries, messages };
  };

  test('beyond the limit each message names only the node that changed (linear in the job)', async () => {
    const big = await nodeEntries(2000);
    expect(big.messages).toBe(4000);
    expect(big.entries).toBe(4000);
  });

  test('up to the limit messages are ComfyUI snapshots of every non-pending node', async () => {
    const small = await nodeEntries(10);
    // start i: i+1 entries, finish i: i+1 entries.
    expect(small.entries).toBe(2 * ((10 * 11) / 2));
    expect((await nodeEntries(10, 5)).entries).toBe(20);
  });
});
