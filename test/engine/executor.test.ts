import { describe, expect, it } from 'vitest';
import { defineNode, Executor, ExecutorBusyError, NodeRegistry, PromptValidationError } from '../../engine/index.ts';
import { GraphBuilder, recordEvents, STRATEGIES, stubWorld } from './helpers.ts';

/** c1 -> add <- c2 ; add -> out ; the classic three-level graph. */
function chain(seed = 1) {
  const g = new GraphBuilder();
  const c1 = g.node('Const', { value: seed });
  const c2 = g.node('Const', { value: 10 });
  const add = g.node('Add', { a: c1.out(), b: c2.out() });
  g.node('Out', { x: add.out() });
  return g.prompt;
}

describe.each(STRATEGIES)('executor with the %s cache', (strategy) => {
  it('runs every needed node once, in dependency order, and returns the UI outputs', async () => {
    const w = stubWorld();
    const ex = new Executor(w.registry, { cache: strategy });
    const r = await ex.execute(chain(), { promptId: 'a' });
    expect(r.status).toBe('success');
    expect(w.runs.indexOf('3')).toBeGreaterThan(Math.max(w.runs.indexOf('1'), w.runs.indexOf('2')));
    expect([...w.runs].sort()).toEqual(['1', '2', '3', '4']);
    expect(r.outputs).toEqual({ '4': { values: [11] } });
    expect(r.meta).toEqual({ '4': { node_id: '4', display_node: '4', parent_node: null, real_node_id: '4' } });
  });

  it('identical re-run: runs nothing (cached) or everything (none)', async () => {
    const w = stubWorld();
    const ex = new Executor(w.registry, { cache: strategy });
    await ex.execute(chain(), { promptId: 'a' });
    w.runs.length = 0;
    const events = recordEvents(ex);
    const r = await ex.execute(chain(), { promptId: 'b' });
    if (strategy === 'none') {
      expect(w.runs.sort()).toEqual(['1', '2', '3', '4']);
      expect(r.cached).toEqual([]);
    } else {
      expect(w.runs).toEqual([]);
      expect(r.cached.sort()).toEqual(['1', '2', '3', '4']);
      // The cached output node replays its UI; history outputs include it.
      expect(events.filter((e) => e.type === 'executed').map((e) => e.data)).toEqual([
        { node: '4', display_node: '4', output: { values: [11] }, prompt_id: 'b' },
      ]);
      expect(r.outputs).toEqual({ '4': { values: [11] } });
    }
  });

  it('a changed constant re-runs only its downstream nodes', async () => {
    const w = stubWorld();
    const ex = new Executor(w.registry, { cache: strategy });
    await ex.execute(chain(1), { promptId: 'a' });
    w.runs.length = 0;
    const r = await ex.execute(chain(2), { promptId: 'b' });
    expect(w.runs.sort()).toEqual(strategy === 'none' ? ['1', '2', '3', '4'] : ['1', '3', '4']);
    expect(r.outputs['4']).toEqual({ values: [12] });
  });

  it('an exception becomes execution_error, and the executor stays usable with its cache', async () => {
    const w = stubWorld();
    const ex = new Executor(w.registry, { cache: strategy });
    const g = new GraphBuilder();
    const c = g.node('Const', { value: 5 });
    const f = g.node('Fail', { x: c.out(), fail: true });
    g.node('Out', { x: f.out() });
    const events = recordEvents(ex);
    const r = await ex.execute(g.prompt, { promptId: 'p' });
    expect(r.status).toBe('error');
    const err = events.find((e) => e.type === 'execution_error')!.data as unknown as Record<string, unknown>;
    expect(err).toMatchObject({
      prompt_id: 'p',
      node_id: '2',
      node_type: 'Fail',
      executed: ['1'],
      exception_message: 'cannot process 5',
      exception_type: 'RangeError',
      current_inputs: { x: [5], fail: [true] },
      current_outputs: ['1'],
    });
    expect((err.traceback as string[])[0]).toBe('RangeError: cannot process 5');
    expect(typeof err.timestamp).toBe('number');
    expect(r.messages.map(([t]) => t)).toEqual(['execution_start', 'execution_cached', 'execution_error']);
    expect(events.at(-1)).toEqual({ type: 'executing', data: { node: null, prompt_id: 'p' } });
    expect(events.some((e) => e.type === 'execution_success')).toBe(false);

    w.runs.length = 0;
    g.prompt['2'].inputs.fail = false;
    const r2 = await ex.execute(g.prompt, { promptId: 'q' });
    expect(r2.status).toBe('success');
    // The producer that succeeded before the failure is served from the cache.
    expect(w.runs).toEqual(strategy === 'none' ? ['1', '2', '3'] : ['2', '3']);
  });

  it('interrupt: progress() stops the node at the next step; upstream stays cached', async () => {
    const w = stubWorld();
    const ex = new Executor(w.registry, { cache: strategy });
    const g = new GraphBuilder();
    const c = g.node('Const', { value: 1 });
    const s = g.node('Slow', { x: c.out(), steps: 50 });
    g.node('Out', { x: s.out() });
    const ac = new AbortController();
    const events = recordEvents(ex);
    ex.onEvent((e) => {
      if (e.type === 'progress' && e.data.value === 2) ac.abort();
    });
    const r = await ex.execute(g.prompt, { promptId: 'p', signal: ac.signal });
    expect(r.status).toBe('interrupted');
    expect(r.interrupted).toMatchObject({ prompt_id: 'p', node_id: '2', node_type: 'Slow', executed: ['1'] });
    expect(events.filter((e) => e.type === 'progress').map((e) => e.data)).toEqual([
      { value: 1, max: 50, prompt_id: 'p', node: '2' },
      { value: 2, max: 50, prompt_id: 'p', node: '2' },
    ]);
    expect(events.filter((e) => e.type === 'binary_preview').length).toBe(1);
    expect(r.messages.map(([t]) => t)).toEqual(['execution_start', 'execution_cached', 'execution_interrupted']);
    w.runs.length = 0;
    g.prompt['2'].inputs.steps = 2;
    await ex.execute(g.prompt, { promptId: 'q' });
    expect(w.runs).toEqual(strategy === 'none' ? ['1', '2', '3'] : ['2', '3']);
  });

  it('fingerprint: NaN always re-runs (with its downstream); a stable value is cached; a changed one re-runs', async () => {
    const w = stubWorld();
    const ex = new Executor(w.registry, { cache: strategy });
    const g = new GraphBuilder();
    const f = g.node('File', { path: 'a.bin' });
    const c = g.node('Const', { value: 1 });
    const r = g.node('Rand', { x: c.out() });
    g.node('Out', { x: f.out() });
    g.node('Out', { x: r.out() });
    w.files.set('a.bin', 1);
    await ex.execute(g.prompt, { promptId: 'a' });
    w.runs.length = 0;
    await ex.execute(g.prompt, { promptId: 'b' });
    expect(w.runs.sort()).toEqual(strategy === 'none' ? ['1', '2', '3', '4', '5'] : ['3', '5']);
    w.runs.length = 0;
    w.files.set('a.bin', 2);
    const res = await ex.execute(g.prompt, { promptId: 'c' });
    expect(w.runs.sort()).toEqual(strategy === 'none' ? ['1', '2', '3', '4', '5'] : ['1', '3', '4', '5']);
    expect(res.outputs['4']).toEqual({ values: [2] });
  });
});

describe('executor', () => {
  it('emits ComfyUI events in order with their payloads', async () => {
    const w = stubWorld();
    const ex = new Executor(w.registry);
    await ex.execute(chain(), { promptId: 'warm' });
    const g = new GraphBuilder();
    const c1 = g.node('Const', { value: 1 });
    const c2 = g.node('Const', { value: 10 });
    const add = g.node('Add', { a: c1.out(), b: c2.out() });
    const slow = g.node('Slow', { x: add.out(), steps: 2 });
    g.node('Out', { x: slow.out() });
    const events = recordEvents(ex);
    await ex.execute(g.prompt, { promptId: 'p' });
    const seq = events.filter((e) => e.type !== 'progress_state').map((e) => (e.type === 'executing' ? `executing:${e.data.node}` : e.type));
    expect(seq).toEqual([
      'execution_start',
      'execution_cached',
      'executing:4',
      'progress',
      'binary_preview',
      'progress',
      'executing:5',
      'executed',
      'execution_success',
      'executing:null',
    ]);
    const data = (t: string) => events.find((e) => e.type === t)!.data as unknown as Record<string, unknown>;
    expect(data('execution_cached')).toMatchObject({ nodes: ['1', '2', '3'], prompt_id: 'p' });
    expect(data('executing')).toEqual({ node: '4', display_node: '4', prompt_id: 'p' });
    expect(data('binary_preview')).toEqual({ prompt_id: 'p', node: '4', display_node: '4', image: { format: 'PNG', data: new Uint8Array([1, 2, 3]) } });
    expect(data('executed')).toEqual({ node: '5', display_node: '5', output: { values: [11] }, prompt_id: 'p' });
    const states = events.filter((e) => e.type === 'progress_state').at(-1)!.data as { nodes: Record<string, { state: string }> };
    expect(states.nodes['5'].state).toBe('finished');
  });

  it('leaves the final executing{node:null} to the caller when asked', async () => {
    const ex = new Executor(stubWorld().registry);
    const events = recordEvents(ex);
    await ex.execute(chain(), { promptId: 'p', sendFinalExecuting: false });
    expect(events.at(-1)!.type).toBe('execution_success');
  });

  it('only output nodes and their ancestors run', async () => {
    const w = stubWorld();
    const p = chain();
    p['99'] = { class_type: 'Const', inputs: { value: 3 } };
    await new Executor(w.registry).execute(p, { promptId: 'p' });
    expect(w.runs).not.toContain('99');
  });

  it('node ids do not enter the cache key: a renumbered prompt is fully cached', async () => {
    const w = stubWorld();
    const ex = new Executor(w.registry);
    await ex.execute(chain(), { promptId: 'a' });
    const renum = Object.fromEntries(
      Object.entries(chain()).map(([id, n]) => [
        `n${id}`,
        { ...n, inputs: Object.fromEntries(Object.entries(n.inputs).map(([k, v]) => [k, Array.isArray(v) ? [`n${v[0]}`, v[1]] : v])) },
      ]),
    );
    w.runs.length = 0;
    const r = await ex.execute(renum, { promptId: 'b' });
    expect(w.runs).toEqual([]);
    expect(r.outputs).toEqual({ n4: { values: [11] } });
  });

  it('classic keeps only the latest prompt; lru keeps older prompts within its bound', async () => {
    for (const [strategy, expectReRun] of [
      ['classic', true],
      ['lru', false],
    ] as const) {
      const w = stubWorld();
      const ex = new Executor(w.registry, { cache: strategy === 'lru' ? { strategy: 'lru', maxEntries: 50 } : 'classic' });
      await ex.execute(chain(1), { promptId: 'a' });
      await ex.execute(chain(2), { promptId: 'b' });
      w.runs.length = 0;
      await ex.execute(chain(1), { promptId: 'c' });
      expect(w.runs.length > 0).toBe(expectReRun);
    }
    const w = stubWorld();
    const ex = new Executor(w.registry, { cache: { strategy: 'lru', maxEntries: 4 } });
    await ex.execute(chain(1), { promptId: 'a' });
    await ex.execute(chain(2), { promptId: 'b' });
    expect(ex.cache.size).toBe(4);
  });

  it('list outputs run consumers once per item; inputIsList nodes get the whole list', async () => {
    const w = stubWorld();
    const g = new GraphBuilder();
    const range = g.node('Range', { n: 4 });
    const k = g.node('Const', { value: 100 });
    const add = g.node('Add', { a: range.out(), b: k.out() });
    const sum = g.node('Sum', { xs: add.out() });
    g.node('Out', { x: add.out() });
    g.node('Out', { x: sum.out() });
    const r = await new Executor(w.registry).execute(g.prompt, { promptId: 'p' });
    expect(w.runs.filter((id) => id === '3').length).toBe(4);
    expect(r.outputs['5']).toEqual({ values: [100, 101, 102, 103] });
    expect(r.outputs['6']).toEqual({ values: [406] });
  });

  it('injects hidden inputs: PROMPT, UNIQUE_ID, EXTRA_PNGINFO', async () => {
    const w = stubWorld();
    const g = new GraphBuilder();
    const c = g.node('Const', { value: 1 });
    g.node('Meta', { x: c.out() });
    const r = await new Executor(w.registry).execute(g.prompt, { promptId: 'p', extraData: { extra_pnginfo: { workflow: { v: 1 } } } });
    expect(r.outputs['2']).toEqual({ seen: [2, '2', { workflow: { v: 1 } }] });
  });

  it('runs an alias with its own inputs through mapInputs', async () => {
    const seen: unknown[] = [];
    const target = defineNode({
      name: 'Target',
      outputNode: true,
      inputs: { required: { size: { type: 'INT' } } },
      outputs: [],
      run: ({ size }) => (seen.push(size), { ui: { size: [size] } }),
    });
    const reg = new NodeRegistry().register(target, {
      aliases: [
        {
          name: 'OtherPackName',
          displayName: 'Other',
          inputs: { required: { w: { type: 'INT' }, h: { type: 'INT' } } },
          mapInputs: ({ w, h }) => ({ size: (w as number) * (h as number) }),
        },
      ],
    });
    expect(reg.objectInfoFor('OtherPackName')).toMatchObject({ name: 'OtherPackName', display_name: 'Other', input: { required: { w: ['INT'], h: ['INT'] } } });
    const r = await new Executor(reg).execute({ '1': { class_type: 'OtherPackName', inputs: { w: 3, h: '4' } } }, { promptId: 'p' });
    expect(seen).toEqual([12]);
    expect(r.outputs['1']).toEqual({ size: [12] });
  });

  it('refuses invalid prompts (PromptValidationError with the 400 body) and concurrent jobs', async () => {
    const w = stubWorld();
    const ex = new Executor(w.registry);
    await expect(ex.execute({ '1': { class_type: 'Nope', inputs: {} } }, { promptId: 'x' })).rejects.toBeInstanceOf(PromptValidationError);
    try {
      await ex.execute({ '1': { class_type: 'Out', inputs: {} } }, { promptId: 'x' });
    } catch (e) {
      expect((e as PromptValidationError).response.node_errors['1'].errors[0].type).toBe('required_input_missing');
    }
    const g = new GraphBuilder();
    g.node('Out', { x: g.node('Slow', { x: g.node('Const', { value: 1 }).out(), steps: 3 }).out() });
    const first = ex.execute(g.prompt, { promptId: 'a' });
    await expect(ex.execute(g.prompt, { promptId: 'b' })).rejects.toBeInstanceOf(ExecutorBusyError);
    expect((await first).status).toBe('success');
  });

  it('a node returning the wrong number of outputs is an execution_error naming it', async () => {
    const reg = new NodeRegistry().register(
      defineNode({ name: 'Bad', outputNode: true, inputs: {}, outputs: [{ name: 'A', type: 'INT' }], run: () => [] as never }),
    );
    const r = await new Executor(reg).execute({ '7': { class_type: 'Bad', inputs: {} } }, { promptId: 'p' });
    expect(r.error).toMatchObject({ node_id: '7', exception_type: 'TypeError', exception_message: 'node 7 (Bad): run() returned 0 result(s), expected 1' });
  });
});

describe('executor: ComfyUI rules for executed, the classic cache and empty lists', () => {
  /** A node with UI text, a UI-less output node and an output node with images, in one world. */
  function uiWorld() {
    const runs: string[] = [];
    const reg = new NodeRegistry().registerAll([
      defineNode({
        name: 'Src',
        inputs: { required: { v: 'INT' } },
        outputs: [{ name: 'INT', type: 'INT' }],
        run: ({ v }, ctx) => (runs.push(ctx.nodeId), [v]),
      }),
      // A non-output node may return UI: ComfyUI sends `executed` for it too.
      defineNode({
        name: 'Talk',
        inputs: { required: { x: 'INT' } },
        outputs: [{ name: 'INT', type: 'INT' }],
        run: ({ x }, ctx) => (runs.push(ctx.nodeId), { result: [x], ui: { text: [`got ${x}`] } }),
      }),
      defineNode({
        name: 'EmptyUi',
        inputs: { required: { x: 'INT' } },
        outputs: [{ name: 'INT', type: 'INT' }],
        run: ({ x }, ctx) => (runs.push(ctx.nodeId), { result: [x], ui: {} }),
      }),
      defineNode({ name: 'Sink', outputNode: true, inputs: { required: { x: 'INT' } }, outputs: [], run: (_i, ctx) => (runs.push(ctx.nodeId), []) }),
      defineNode({
        name: 'Img',
        outputNode: true,
        inputs: { required: { x: 'INT' } },
        outputs: [],
        run: ({ x }, ctx) => (runs.push(ctx.nodeId), { ui: { images: [{ filename: `${x}.png` }] } }),
      }),
      defineNode({ name: 'None', inputs: {}, outputs: [{ name: 'INT', type: 'INT', isList: true }], run: (_i, ctx) => (runs.push(ctx.nodeId), [[]]) }),
      defineNode({
        name: 'Count',
        inputIsList: true,
        outputNode: true,
        inputs: { required: { xs: 'INT' } },
        outputs: [],
        run: ({ xs }, ctx) => (runs.push(ctx.nodeId), { ui: { n: [xs.length] } }),
      }),
    ]);
    return { reg, runs };
  }
  const executedOf = (events: ReturnType<typeof recordEvents>) =>
    events.filter((e) => e.type === 'executed').map((e) => e.data as unknown as { node: string; output: unknown });

  it('executed: only for a run that returned a non-empty ui; cached output nodes replay theirs (null when none)', async () => {
    const { reg, runs } = uiWorld();
    const prompt = {
      '1': { class_type: 'Src', inputs: { v: 3 } },
      '2': { class_type: 'Talk', inputs: { x: ['1', 0] } },
      '3': { class_type: 'EmptyUi', inputs: { x: ['2', 0] } },
      '4': { class_type: 'Sink', inputs: { x: ['3', 0] } },
      '5': { class_type: 'Img', inputs: { x: ['3', 0] } },
    };
    const ex = new Executor(reg);
    const events = recordEvents(ex);
    const first = await ex.execute(prompt, { promptId: 'a' });
    expect(executedOf(events)).toEqual([
      { node: '2', display_node: '2', output: { text: ['got 3'] }, prompt_id: 'a' },
      { node: '5', display_node: '5', output: { images: [{ filename: '3.png' }] }, prompt_id: 'a' },
    ]);
    expect(Object.keys(first.outputs).sort()).toEqual(['2', '5']);

    // Re-run, all cached: only the scheduled output nodes are reached, each with its cached UI.
    runs.length = 0;
    events.length = 0;
    const again = await ex.execute(prompt, { promptId: 'b' });
    expect(runs).toEqual([]);
    expect(executedOf(events).sort((x, y) => x.node.localeCompare(y.node))).toEqual([
      { node: '4', display_node: '4', output: null, prompt_id: 'b' },
      { node: '5', display_node: '5', output: { images: [{ filename: '3.png' }] }, prompt_id: 'b' },
    ]);
    expect(again.outputs).toEqual({ '5': { images: [{ filename: '3.png' }] } });
  });

  it('classic cache keeps the results of nodes outside the partial execution targets', async () => {
    const { reg, runs } = uiWorld();
    const prompt = {
      '1': { class_type: 'Src', inputs: { v: 1 } },
      '2': { class_type: 'Img', inputs: { x: ['1', 0] } },
      '3': { class_type: 'Src', inputs: { v: 2 } },
      '4': { class_type: 'Img', inputs: { x: ['3', 0] } },
    };
    for (const strategy of ['classic', 'lru'] as const) {
      const ex = new Executor(reg, { cache: strategy });
      await ex.execute(prompt, { promptId: 'all' });
      runs.length = 0;
      // Only output 4 runs now; 1 and 2 are not part of this job but still of its prompt.
      await ex.execute(prompt, { promptId: 'four', outputs: ['4'] });
      runs.length = 0;
      const r = await ex.execute(prompt, { promptId: 'two', outputs: ['2'] });
      expect(runs).toEqual([]);
      expect(r.cached.sort()).toEqual(['1', '2']);
      // A node removed from the prompt loses its entries (classic).
      const { '3': _3, '4': _4, ...onlyTwo } = prompt;
      await ex.execute(onlyTwo, { promptId: 'drop' });
      runs.length = 0;
      await ex.execute(prompt, { promptId: 'back', outputs: ['4'] });
      expect(runs.sort()).toEqual(strategy === 'classic' ? ['3', '4'] : []);
    }
  });

  it('an empty list on an input fails the node with an execution_error naming node and input', async () => {
    const { reg, runs } = uiWorld();
    const r = await new Executor(reg).execute(
      { '1': { class_type: 'None', inputs: {} }, '2': { class_type: 'Talk', inputs: { x: ['1', 0] } }, '3': { class_type: 'Img', inputs: { x: ['2', 0] } } },
      { promptId: 'p' },
    );
    expect(r.status).toBe('error');
    expect(runs).toEqual(['1']);
    expect(r.error).toMatchObject({
      node_id: '2',
      node_type: 'Talk',
      exception_type: 'EmptyInputListError',
      exception_message: "node 2 (Talk): input 'x' received an empty list (node 1 output 0 produced no items); there is nothing to run it on",
      current_inputs: { x: [] },
    });
    // A node that takes whole lists gets the empty list, as in ComfyUI, and decides.
    const whole = await new Executor(reg).execute(
      { '1': { class_type: 'None', inputs: {} }, '2': { class_type: 'Count', inputs: { xs: ['1', 0] } } },
      { promptId: 'q' },
    );
    expect(whole.status).toBe('success');
    expect(whole.outputs['2']).toEqual({ n: [0] });
  });
});

describe('executor: out-of-band interrupts', () => {
  it('pollInterrupt lets a synchronous node polling ctx.throwIfInterrupted() stop mid-run', async () => {
    // Stands for the worker's shared-memory flag: written while the node blocks the event loop.
    let flag = false;
    let iterations = 0;
    const reg = new NodeRegistry().register(
      defineNode({
        name: 'Busy',
        outputNode: true,
        inputs: {},
        outputs: [],
        run: (_i, ctx) => {
          for (let i = 0; i < 1000; i++) {
            ctx.throwIfInterrupted();
            iterations++;
            if (i === 3) flag = true;
          }
          return [];
        },
      }),
    );
    const ex: Executor = new Executor(reg, { pollInterrupt: () => flag && ex.interrupt() });
    const r = await ex.execute({ '1': { class_type: 'Busy', inputs: {} } }, { promptId: 'p' });
    expect(r.status).toBe('interrupted');
    expect(iterations).toBe(4);
  });
});
