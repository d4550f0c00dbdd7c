// One test per validation error type (shared/spec/comfyui-api.md §5.1), asserting the exact ComfyUI-shaped objects.
import { describe, expect, it } from 'vitest';
import { defineNode, NodeRegistry, validatePrompt } from '../../engine/index.ts';

const longList = Array.from({ length: 25 }, (_, i) => `m${i}`);
const reg = new NodeRegistry().registerAll([
  defineNode({
    name: 'Gen',
    displayName: 'Generator',
    inputs: {
      required: {
        steps: { type: 'INT', default: 20, min: 1, max: 100 },
        cfg: { type: 'FLOAT', default: 4.5, min: 0, max: 30 },
        sampler: { type: 'COMBO', values: ['euler', 'scm'] },
        text: { type: 'STRING' },
      },
      optional: { flag: { type: 'BOOLEAN' }, model: { type: 'COMBO', values: longList }, tags: { type: 'STRING' } },
    },
    outputs: [
      { name: 'LATENT', type: 'LATENT' },
      { name: 'INT', type: 'INT' },
    ],
    run: () => ['x', 1] as never,
  }),
  defineNode({ name: 'Pass', inputs: { required: { x: 'LATENT' } }, outputs: [{ name: 'LATENT', type: 'LATENT' }], run: () => ['x'] as never }),
  defineNode({ name: 'Save', outputNode: true, inputs: { required: { images: 'LATENT' } }, outputs: [], run: () => ({ ui: {} }) }),
  defineNode({ name: 'AnyIn', outputNode: true, inputs: { required: { v: '*' } }, outputs: [], run: () => ({ ui: {} }) }),
  defineNode({
    name: 'Broken',
    outputNode: true,
    inputs: {
      required: {
        f: {
          type: 'COMBO',
          values: () => {
            throw new Error('models folder unreadable');
          },
        },
      },
    },
    outputs: [],
    run: () => ({ ui: {} }),
  }),
]);

const gen = (inputs: Record<string, unknown> = {}) => ({ class_type: 'Gen', inputs: { steps: 20, cfg: 4.5, sampler: 'euler', text: 't', ...inputs } });
const save = (src = '1') => ({ class_type: 'Save', inputs: { images: [src, 0] } });
const failing = (nodeId: string, classType: string, errors: unknown[], outputs = ['2']) => ({
  [nodeId]: { errors, dependent_outputs: outputs, class_type: classType },
});

function expectNodeError(prompt: Record<string, unknown>, nodeId: string, classType: string, error: unknown) {
  const r = validatePrompt(prompt, reg);
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.node_errors).toEqual(failing(nodeId, classType, [error]));
  const e = error as { message: string; details: string };
  expect(r.error).toEqual({
    type: 'prompt_outputs_failed_validation',
    message: 'Prompt outputs failed validation',
    details: `${e.message}: ${e.details}`,
    extra_info: {},
  });
}

describe('validatePrompt: whole-prompt errors', () => {
  it('missing_node_type: node without class_type', () => {
    expect(validatePrompt({ '7': { inputs: {} } }, reg)).toEqual({
      ok: false,
      error: {
        type: 'missing_node_type',
        message: "Node 'ID #7' has no class_type. The workflow may be corrupted or a custom node may have been removed.",
        details: "Node ID '#7'",
        extra_info: { node_id: '7', class_type: null, node_title: null },
      },
      node_errors: {},
    });
  });

  it('missing_node_type: unknown class, named by its _meta title when it has one', () => {
    expect(validatePrompt({ '1': gen(), '3': { class_type: 'NoSuchNode', inputs: {} } }, reg)).toEqual({
      ok: false,
      error: {
        type: 'missing_node_type',
        message: "Node 'NoSuchNode' not found. The custom node may not be installed.",
        details: "Node ID '#3'",
        extra_info: { node_id: '3', class_type: 'NoSuchNode', node_title: 'NoSuchNode' },
      },
      node_errors: {},
    });
    const r = validatePrompt({ '1': gen(), '3': { class_type: 'NoSuchNode', inputs: {}, _meta: { title: 'My upscaler' } } }, reg);
    expect(!r.ok && r.error).toEqual({
      type: 'missing_node_type',
      message: "Node 'My upscaler' not found. The custom node may not be installed.",
      details: "Node ID '#3'",
      extra_info: { node_id: '3', class_type: 'NoSuchNode', node_title: 'My upscaler' },
    });
  });

  it('invalid_prompt: not an object, or past the node limit', () => {
    const r = validatePrompt([1, 2], reg);
    expect(!r.ok && r.error.type).toBe('invalid_prompt');
    const many = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [String(i), gen()]));
    expect(validatePrompt(many, reg, { maxNodes: 10 })).toEqual({
      ok: false,
      error: {
        type: 'invalid_prompt',
        message: 'Cannot execute because the prompt has 11 nodes, more than the limit of 10.',
        details: '',
        extra_info: { node_count: 11, limit: 10 },
      },
      node_errors: {},
    });
  });

  it('prompt_no_outputs', () => {
    expect(validatePrompt({ '1': gen() }, reg)).toEqual({
      ok: false,
      error: { type: 'prompt_no_outputs', message: 'Prompt has no outputs', details: '', extra_info: {} },
      node_errors: {},
    });
    // partial_execution_targets naming no output node
    const r = validatePrompt({ '1': gen(), '2': save() }, reg, { partialExecutionTargets: ['1'] });
    expect(!r.ok && r.error.type).toBe('prompt_no_outputs');
  });
});

describe('validatePrompt: per-node errors', () => {
  it('required_input_missing', () => {
    expectNodeError({ '1': { class_type: 'Gen', inputs: { cfg: 1, sampler: 'euler', text: '' } }, '2': save() }, '1', 'Gen', {
      type: 'required_input_missing',
      message: 'Required input is missing',
      details: 'steps',
      extra_info: { input_name: 'steps' },
    });
  });

  it('bad_linked_input: wrong link shape, unknown node, missing output slot', () => {
    const cfg = ['LATENT'];
    expectNodeError({ '1': gen(), '2': { class_type: 'Save', inputs: { images: ['1', 0, 2] } } }, '2', 'Save', {
      type: 'bad_linked_input',
      message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
      details: 'images',
      extra_info: { input_name: 'images', input_config: cfg, received_value: ['1', 0, 2] },
    });
    expectNodeError({ '2': { class_type: 'Save', inputs: { images: ['99', 0] } } }, '2', 'Save', {
      type: 'bad_linked_input',
      message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
      details: "images: node '99' is not in the prompt",
      extra_info: { input_name: 'images', input_config: cfg, received_value: ['99', 0] },
    });
    expectNodeError({ '1': gen(), '2': { class_type: 'Save', inputs: { images: ['1', 5] } } }, '2', 'Save', {
      type: 'bad_linked_input',
      message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
      details: "images: node '1' (Gen) has no output 5 (it has 2)",
      extra_info: { input_name: 'images', input_config: cfg, received_value: ['1', 5] },
    });
  });

  it('return_type_mismatch', () => {
    expectNodeError({ '1': gen(), '2': { class_type: 'Save', inputs: { images: ['1', 1] } } }, '2', 'Save', {
      type: 'return_type_mismatch',
      message: 'Return type mismatch between linked nodes',
      details: 'images, received_type(INT) mismatch input_type(LATENT)',
      extra_info: { input_name: 'images', input_config: ['LATENT'], received_type: 'INT', linked_node: ['1', 1] },
    });
  });

  it('value_not_in_list (short list shown, long list summarised without input_config)', () => {
    expectNodeError({ '1': gen({ sampler: 'ddim' }), '2': save() }, '1', 'Gen', {
      type: 'value_not_in_list',
      message: 'Value not in list',
      details: "sampler: 'ddim' not in ['euler', 'scm']",
      extra_info: { input_name: 'sampler', input_config: [['euler', 'scm']], received_value: 'ddim' },
    });
    expectNodeError({ '1': gen({ model: 'x.pth' }), '2': save() }, '1', 'Gen', {
      type: 'value_not_in_list',
      message: 'Value not in list',
      details: "model: 'x.pth' not in (list of length 25)",
      extra_info: { input_name: 'model', input_config: null, received_value: 'x.pth' },
    });
  });

  it('value_smaller_than_min', () => {
    expectNodeError({ '1': gen({ steps: 0 }), '2': save() }, '1', 'Gen', {
      type: 'value_smaller_than_min',
      message: 'Value 0 smaller than min of 1',
      details: 'steps',
      extra_info: { input_name: 'steps', input_config: ['INT', { default: 20, min: 1, max: 100 }], received_value: 0 },
    });
  });

  it('value_bigger_than_max (after coercion of a numeric string)', () => {
    expectNodeError({ '1': gen({ cfg: '31.5' }), '2': save() }, '1', 'Gen', {
      type: 'value_bigger_than_max',
      message: 'Value 31.5 bigger than max of 30',
      details: 'cfg',
      extra_info: { input_name: 'cfg', input_config: ['FLOAT', { default: 4.5, min: 0, max: 30 }], received_value: 31.5 },
    });
  });

  it('invalid_input_type: unconvertible value, wrong value type, nesting past the limit', () => {
    expectNodeError({ '1': gen({ steps: '1.5' }), '2': save() }, '1', 'Gen', {
      type: 'invalid_input_type',
      message: 'Failed to convert an input value to a INT value',
      details: "steps, 1.5, invalid literal for int() with base 10: '1.5'",
      extra_info: {
        input_name: 'steps',
        input_config: ['INT', { default: 20, min: 1, max: 100 }],
        received_value: '1.5',
        exception_message: "invalid literal for int() with base 10: '1.5'",
      },
    });
    expectNodeError({ '1': gen({ flag: 'maybe' }), '2': save() }, '1', 'Gen', {
      type: 'invalid_input_type',
      message: 'Failed to convert an input value to a BOOLEAN value',
      details: "flag, maybe, expected a boolean, got 'maybe'",
      extra_info: { input_name: 'flag', input_config: ['BOOLEAN'], received_value: 'maybe', exception_message: "expected a boolean, got 'maybe'" },
    });
    let deep: unknown = 'leaf';
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    expectNodeError({ '1': gen({ tags: deep }), '2': save() }, '1', 'Gen', {
      type: 'invalid_input_type',
      message: 'Failed to convert an input value to a STRING value',
      details: 'tags, <value nested deeper than 64 levels>, value is nested too deeply',
      extra_info: { input_name: 'tags', input_config: ['STRING'], received_value: null, exception_message: 'value is nested deeper than 64 levels' },
    });
  });

  it('a constant for a socket-typed input is refused; "*" accepts anything', () => {
    expectNodeError({ '2': { class_type: 'Save', inputs: { images: 'not-a-link' } } }, '2', 'Save', {
      type: 'invalid_input_type',
      message: 'Failed to convert an input value to a LATENT value',
      details: 'images, not-a-link, a constant cannot be given for an input of type LATENT; link it to a node output',
      extra_info: {
        input_name: 'images',
        input_config: ['LATENT'],
        received_value: 'not-a-link',
        exception_message: 'a constant cannot be given for an input of type LATENT; link it to a node output',
      },
    });
    expect(validatePrompt({ '5': { class_type: 'AnyIn', inputs: { v: { any: 'thing' } } } }, reg).ok).toBe(true);
  });

  it('dependency_cycle names the nodes on the cycle, not the ones downstream of it', () => {
    const r = validatePrompt(
      { '1': { class_type: 'Pass', inputs: { x: ['3', 0] } }, '3': { class_type: 'Pass', inputs: { x: ['1', 0] } }, '2': save('3') },
      reg,
    );
    expect(r).toEqual({
      ok: false,
      error: {
        type: 'prompt_outputs_failed_validation',
        message: 'Prompt outputs failed validation',
        details:
          'Dependency cycle detected: x: node 1 is on a dependency cycle through nodes #3 (Pass), #1 (Pass)\nDependency cycle detected: x: node 3 is on a dependency cycle through nodes #3 (Pass), #1 (Pass)',
        extra_info: {},
      },
      node_errors: {
        '3': {
          errors: [
            {
              type: 'dependency_cycle',
              message: 'Dependency cycle detected',
              details: 'x: node 3 is on a dependency cycle through nodes #3 (Pass), #1 (Pass)',
              extra_info: { input_name: 'x', linked_node: ['1', 0], cycle_nodes: ['3', '1'], cycle_length: 2 },
            },
          ],
          dependent_outputs: ['2'],
          class_type: 'Pass',
        },
        '1': {
          errors: [
            {
              type: 'dependency_cycle',
              message: 'Dependency cycle detected',
              details: 'x: node 1 is on a dependency cycle through nodes #3 (Pass), #1 (Pass)',
              extra_info: { input_name: 'x', linked_node: ['3', 0], cycle_nodes: ['3', '1'], cycle_length: 2 },
            },
          ],
          dependent_outputs: ['2'],
          class_type: 'Pass',
        },
      },
    });
  });

  it('exception_during_validation when a combo list cannot be computed', () => {
    const r = validatePrompt({ '4': { class_type: 'Broken', inputs: { f: 'a' } } }, reg);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const err = r.node_errors['4'].errors[0];
    expect(err).toMatchObject({
      type: 'exception_during_validation',
      message: 'Exception when validating node',
      details: 'models folder unreadable',
      extra_info: { exception_type: 'Error' },
    });
    expect(Array.isArray(err.extra_info.traceback)).toBe(true);
  });
});

describe('validatePrompt: what passes', () => {
  it('coerces constants as ComfyUI does and unwraps {__value__}', () => {
    const r = validatePrompt({ '1': gen({ steps: '5', cfg: 3, text: 12, flag: 'false', tags: { __value__: 'a' } }), '2': save() }, reg);
    expect(r.ok && r.prompt['1'].inputs).toEqual({ steps: 5, cfg: 3, sampler: 'euler', text: '12', flag: false, tags: 'a' });
    const w = validatePrompt({ '5': { class_type: 'AnyIn', inputs: { v: { __value__: [1, 2] } } } }, reg);
    expect(w.ok && w.prompt['5'].inputs.v).toEqual([1, 2]);
    const t = validatePrompt({ '1': gen({ steps: 7.9 }), '2': save() }, reg);
    expect(t.ok && t.prompt['1'].inputs.steps).toBe(7);
  });

  it('only output nodes and their ancestors are validated; an invalid orphan is ignored', () => {
    const r = validatePrompt({ '1': gen(), '2': save(), '9': gen({ steps: -5 }) }, reg);
    expect(r).toMatchObject({ ok: true, outputs: ['2'], node_errors: {} });
  });

  it('queues the valid outputs and reports the invalid ones (partial success)', () => {
    const r = validatePrompt(
      { '1': gen(), '2': save(), '3': gen({ sampler: 'nope' }), '4': { class_type: 'Pass', inputs: { x: ['3', 0] } }, '5': save('4') },
      reg,
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.outputs).toEqual(['2']);
    // The error sits on node 3 only; 4 is invalid through 3 and carries no error of its own.
    expect(Object.keys(r.node_errors)).toEqual(['3']);
    expect(r.node_errors['3'].dependent_outputs).toEqual(['5']);
  });

  it('partial_execution_targets restricts the outputs', () => {
    const r = validatePrompt({ '1': gen(), '2': save(), '5': save() }, reg, { partialExecutionTargets: ['5'] });
    expect(r.ok && r.outputs).toEqual(['5']);
  });
});
