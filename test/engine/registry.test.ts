import { describe, expect, it } from 'vitest';
import { defineNode, NodeRegistry, RegistryError, type InferInputs, type NodeContext } from '../../engine/index.ts';
import { comfyRegistry } from './fixtures/comfy-doubles.ts';

/** Compile-time equality check: `npm test` runs tsc over the tests, so a wrong inference fails it. */
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Mutual<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const assertType = <T extends true>(): T => true as T;

describe('object_info', () => {
  it('describes a node in exactly ComfyUI shape (KSampler)', () => {
    expect(comfyRegistry().objectInfoFor('KSampler')).toEqual({
      input: {
        required: {
          model: ['MODEL'],
          seed: ['INT', { default: 0, min: 0, max: 18446744073709551615, control_after_generate: true }],
          steps: ['INT', { default: 20, min: 1, max: 10000 }],
          cfg: ['FLOAT', { default: 8.0, min: 0, max: 100, step: 0.1, round: 0.01 }],
          sampler_name: [['euler', 'dpmpp_2m', 'scm']],
          scheduler: [['normal', 'karras', 'sgm_uniform', 'simple']],
          positive: ['CONDITIONING'],
          negative: ['CONDITIONING'],
          latent_image: ['LATENT'],
          denoise: ['FLOAT', { default: 1.0, min: 0, max: 1, step: 0.01 }],
        },
      },
      input_order: { required: ['model', 'seed', 'steps', 'cfg', 'sampler_name', 'scheduler', 'positive', 'negative', 'latent_image', 'denoise'] },
      is_input_list: false,
      output: ['LATENT'],
      output_is_list: [false],
      output_name: ['LATENT'],
      name: 'KSampler',
      display_name: 'KSampler',
      description: '',
      python_module: 'nodes',
      category: 'sampling',
      output_node: false,
    });
  });

  it('lists options, hidden inputs, output nodes and tooltips', () => {
    const info = comfyRegistry().objectInfo();
    expect(info.PreviewImage).toMatchObject({
      input: { required: { images: ['IMAGE'] }, hidden: { prompt: 'PROMPT', extra_pnginfo: 'EXTRA_PNGINFO' } },
      output: [],
      output_node: true,
      python_module: 'nodes',
    });
    expect(info.SanaCheckpointLoader.input.required!.enable_cfg_passthrough).toEqual([
      'BOOLEAN',
      { default: true, tooltip: 'Enable CFG scale passthrough to model forward method' },
    ]);
    expect(info.SanaTextEncode.input.required!.text).toEqual(['STRING', { multiline: true }]);
    expect(info.SanaResolutionSelect.output_name).toEqual(['width', 'height']);
    expect(info.SanaCheckpointLoader.python_module).toBe('custom_nodes.sana_graph');
  });

  it('evaluates COMBO value functions at object_info time and skips classes that throw', () => {
    let files = ['a.safetensors'];
    const reg = new NodeRegistry()
      .register(
        defineNode({
          name: 'Loader',
          inputs: { required: { f: { type: 'COMBO', values: () => files } } },
          outputs: [{ name: 'M', type: 'M' }],
          run: ({ f }) => [f] as never,
        }),
      )
      .register(
        defineNode({
          name: 'Broken',
          inputs: {
            required: {
              f: {
                type: 'COMBO',
                values: () => {
                  throw new Error('no folder');
                },
              },
            },
          },
          outputs: [],
          run: () => [],
        }),
      );
    expect(reg.objectInfo().Loader.input.required!.f).toEqual([['a.safetensors']]);
    files = ['a.safetensors', 'b.safetensors'];
    const errors: string[] = [];
    const info = reg.objectInfo((name, err) => errors.push(`${name}: ${(err as Error).message}`));
    expect(info.Loader.input.required!.f).toEqual([['a.safetensors', 'b.safetensors']]);
    expect(info).not.toHaveProperty('Broken');
    expect(errors).toEqual(['Broken: no folder']);
  });

  it('registers aliases under other class names, sharing the definition', () => {
    const reg = comfyRegistry();
    reg.alias('EmptySanaLatentImage', { name: 'EmptyLatentImage', displayName: 'Empty Latent Image', category: 'latent' });
    expect(reg.objectInfoFor('EmptyLatentImage')).toMatchObject({
      name: 'EmptyLatentImage',
      display_name: 'Empty Latent Image',
      category: 'latent',
      input_order: { required: ['width', 'height', 'batch_size'] },
    });
    expect(reg.get('EmptyLatentImage')!.aliasOf).toBe('EmptySanaLatentImage');
    expect(() => reg.alias('Nope', 'X')).toThrow(RegistryError);
    expect(() => reg.alias('EmptySanaLatentImage', { name: 'Y', inputs: { required: { a: 'INT' } } })).toThrow(/declares its own inputs but no mapInputs/);
    expect(() => reg.alias('EmptySanaLatentImage', 'KSampler')).toThrow(/already registered/);
  });
});

describe('defineNode', () => {
  const base = { name: 'N', outputs: [], run: () => ({ ui: {} }) } as const;
  it('rejects bad declarations, naming node and input', () => {
    expect(() => defineNode({ ...base, inputs: { required: { w: { type: 'INT', default: 5, min: 10 } } } })).toThrow(
      "node definition 'N', input 'w': default 5 is outside [10, undefined]",
    );
    expect(() => defineNode({ ...base, inputs: { required: { c: { type: 'COMBO', values: ['a'], default: 'b' } } } })).toThrow(
      "node definition 'N', input 'c': default 'b' is not one of the values",
    );
    expect(() => defineNode({ ...base, inputs: { required: { x: 'INT' }, optional: { x: 'INT' } } })).toThrow(
      "node definition 'N': input 'x' is declared twice",
    );
    expect(() => defineNode({ ...base, inputs: { hidden: { p: 'NOPE' as 'PROMPT' } } })).toThrow("hidden input 'p' has unknown kind 'NOPE'");
    expect(() => defineNode({ ...base, inputs: {}, outputs: [{ name: 'x', type: '' }], run: () => ({}) })).toThrow('output 0 needs a name and a type');
  });

  it('infers run() argument types from the declaration', () => {
    const node = defineNode({
      name: 'Typed',
      inputs: {
        required: {
          n: { type: 'INT' },
          f: { type: 'FLOAT' },
          s: { type: 'STRING' },
          b: { type: 'BOOLEAN' },
          c: { type: 'COMBO', values: ['x', 'y'] },
          d: { type: 'COMBO', values: () => ['z'] },
          custom: 'UNDECLARED_TYPE',
        },
        optional: { o: { type: 'INT' } },
        hidden: { id: 'UNIQUE_ID' },
      },
      outputs: [
        { name: 'S', type: 'STRING' },
        { name: 'L', type: 'INT', isList: true },
      ],
      run: (inputs) => [inputs.s, [inputs.n]],
    });
    type In = Parameters<typeof node.run>[0];
    assertType<Equals<In, InferInputs<typeof node.inputs>>>();
    assertType<Equals<In['n'] | In['f'], number>>();
    assertType<Equals<In['s'], string>>();
    assertType<Equals<In['b'], boolean>>();
    assertType<Equals<In['c'], 'x' | 'y'>>();
    assertType<Equals<In['d'], string>>();
    assertType<Equals<In['custom'], unknown>>();
    assertType<Equals<In['o'], number | undefined>>();
    assertType<Equals<In['id'], string>>();
    type Out = Extract<Exclude<ReturnType<typeof node.run>, Promise<unknown>>, readonly unknown[]>;
    assertType<Mutual<Out, readonly [string, readonly number[]]>>();
    const ctx = {} as NodeContext;
    void ctx;
    expect(node.name).toBe('Typed');
  });
});
