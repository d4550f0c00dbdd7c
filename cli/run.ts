// `sana-graph run <file>`: runs a workflow headless in this process. The file is an API prompt,
// a UI workflow (converted with the engine's converter), a {"prompt": ...} request body, or a
// PNG written by this tool (its `prompt` chunk, else its `workflow` chunk).
import fs from 'node:fs';
import path from 'node:path';
import {
  convertUiToApi,
  parseWorkflowFile,
  validatePrompt,
  type ApiPrompt,
  type EngineEvent,
  type ExecutionErrorData,
  type NodeRegistry,
} from '../engine/index.ts';
import { stringifyJson } from '../engine/json.ts';
import { processHost } from '../host/process.ts';
import { buildRegistry } from '../host/registry.ts';
import { isFolderType } from '../nodes/image/folders.ts';
import { readPngText } from '../nodes/image/png.ts';
import { nodeServices } from '../nodes/services.ts';
import { WorkflowInputError } from './args.ts';
import { ProgressView, type ProgressSink } from './progress.ts';

export interface LoadedWorkflow {
  prompt: ApiPrompt;
  /** The UI workflow when the file had one: embedded again into the images this run saves. */
  workflow?: unknown;
  warnings: string[];
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new WorkflowInputError(`${what} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Reads any supported workflow file into an API prompt. */
export function loadWorkflowFile(file: string, registry: NodeRegistry): LoadedWorkflow {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new WorkflowInputError(`cannot read workflow file ${file}: ${(e as Error).message}`);
  }
  const fromUi = (ui: unknown): LoadedWorkflow => {
    const { prompt, warnings } = convertUiToApi(ui, registry.objectInfo());
    return { prompt, workflow: ui, warnings };
  };
  if (bytes.subarray(0, 8).equals(PNG_SIGNATURE)) {
    const text = readPngText(bytes);
    const workflow = text.workflow !== undefined ? parseJson(text.workflow, `the workflow chunk of ${file}`) : undefined;
    if (text.prompt !== undefined) {
      const parsed = parseWorkflowFile(parseJson(text.prompt, `the prompt chunk of ${file}`));
      if (parsed.kind !== 'api') throw new WorkflowInputError(`the prompt chunk of ${file} is not an API prompt`);
      return { prompt: parsed.prompt, workflow, warnings: [] };
    }
    if (workflow !== undefined) return fromUi(workflow);
    throw new WorkflowInputError(`${file} has no "prompt" or "workflow" text chunk (was it saved by sana-graph or ComfyUI?)`);
  }
  let json = parseJson(bytes.toString('utf8'), file);
  // A POST /prompt body: {"prompt": {...}, "extra_data": {"extra_pnginfo": {"workflow": ...}}}.
  const body = json as { prompt?: unknown; extra_data?: { extra_pnginfo?: { workflow?: unknown } } };
  let workflow: unknown;
  if (body && typeof body === 'object' && body.prompt && typeof body.prompt === 'object' && !Array.isArray(body.prompt) && !('class_type' in body.prompt)) {
    workflow = body.extra_data?.extra_pnginfo?.workflow;
    json = body.prompt;
  }
  const parsed = parseWorkflowFile(json);
  return parsed.kind === 'api' ? { prompt: parsed.prompt, workflow, warnings: [] } : fromUi(parsed.workflow);
}

/** Applies `--set node.input=value`; `node` is an id, a title (_meta.title) or a unique class type. */
export function applySet(prompt: ApiPrompt, set: { node: string; input: string; value: unknown }): string {
  const ids = Object.keys(prompt);
  let matches = ids.filter((id) => id === set.node);
  if (matches.length === 0) matches = ids.filter((id) => (prompt[id] as { _meta?: { title?: unknown } })._meta?.title === set.node);
  if (matches.length === 0) matches = ids.filter((id) => prompt[id].class_type === set.node);
  if (matches.length === 0)
    throw new WorkflowInputError(`--set ${set.node}.${set.input}: no node with id, title or class "${set.node}" (ids: ${ids.join(', ')})`);
  if (matches.length > 1)
    throw new WorkflowInputError(`--set ${set.node}.${set.input}: "${set.node}" matches several nodes (${matches.join(', ')}); use a node id`);
  const node = prompt[matches[0]];
  node.inputs = { ...(node.inputs ?? {}), [set.input]: set.value };
  return matches[0];
}

export interface RunOptions {
  file: string;
  outputDir?: string;
  inputDir?: string;
  tempDir?: string;
  modelsDir?: string;
  sets: Array<{ node: string; input: string; value: unknown }>;
  json: boolean;
  quiet: boolean;
  extraNodeModules: string[];
  stdout: (s: string) => void;
  stderr: ProgressSink;
}

/** Runs the workflow; returns the process exit code (0 ok, 1 execution error, 2 invalid, 130 interrupted). */
export async function runWorkflow(o: RunOptions): Promise<number> {
  const registry = await buildRegistry(o.extraNodeModules, { output: o.outputDir, input: o.inputDir, temp: o.tempDir, models: o.modelsDir });
  // The folders as resolved (defaults filled in): the executor gets the same ones.
  const { folders } = nodeServices(registry.services, 'sana-graph run');
  for (const d of [folders.output, folders.input, folders.temp]) fs.mkdirSync(d, { recursive: true });
  const loaded = loadWorkflowFile(o.file, registry);
  for (const w of loaded.warnings) o.stderr.write(`warning: ${w}\n`);
  for (const s of o.sets) applySet(loaded.prompt, s);

  const v = validatePrompt(loaded.prompt, registry);
  if (!v.ok) {
    o.stderr.write(`error: ${v.error.message}${v.error.details ? `\n${v.error.details}` : ''}\n`);
    for (const [id, ne] of Object.entries(v.node_errors)) {
      for (const err of ne.errors) o.stderr.write(`  node ${id} (${ne.class_type}): ${err.message}: ${err.details}\n`);
    }
    if (o.json) o.stdout(stringifyJson({ status: 'invalid', error: v.error, node_errors: v.node_errors }) + '\n');
    return 2;
  }

  // The job runs in the server's execution host (a worker thread in a child process): this
  // thread stays free to draw progress and to turn Ctrl+C into an interrupt even while a node
  // keeps the worker busy, and a native crash in a node becomes an error report, not a core dump.
  const runner = processHost({ folders, cache: 'none', cacheSize: 0, extraNodeModules: o.extraNodeModules }, (m) => o.stderr.write(`${m}\n`));
  const view = new ProgressView(o.stderr, (id) => v.prompt[id]?.class_type ?? '?', countNodes(v.prompt, v.outputs));
  let sigints = 0;
  const onSigint = () => {
    // The first Ctrl+C interrupts at the next step; a second one gives up on the node.
    if (++sigints > 1) process.exit(130);
    o.stderr.write('\ninterrupting (Ctrl+C again to quit at once)\n');
    runner.interrupt();
  };
  process.on('SIGINT', onSigint);
  const promptId = `cli-${Date.now()}`;
  let result;
  try {
    result = await runner.run(
      {
        number: 0,
        promptId,
        prompt: v.prompt,
        extraData: loaded.workflow !== undefined ? { extra_pnginfo: { workflow: loaded.workflow } } : {},
        outputs: v.outputs,
        sensitive: {},
        clientId: undefined,
      },
      {
        event: (e) => {
          if (!o.quiet) view.event(e as unknown as EngineEvent);
        },
        preview: () => undefined,
      },
    );
  } finally {
    process.off('SIGINT', onSigint);
    if (!o.quiet) view.finish();
    await runner.close();
  }
  if (result.profile) o.stderr.write(`${result.profile}\n`);

  const images: string[] = [];
  for (const ui of Object.values(result.outputs)) {
    for (const img of (ui as { images?: Array<{ filename: string; subfolder: string; type: string }> }).images ?? []) {
      if (isFolderType(img.type)) images.push(path.join(folders[img.type], img.subfolder, img.filename));
    }
  }
  const last = result.status.messages.at(-1);
  const error = last?.[0] === 'execution_error' ? (last[1] as unknown as ExecutionErrorData) : undefined;
  const interrupted = last?.[0] === 'execution_interrupted';
  const status = result.status.status_str === 'success' ? 'success' : interrupted ? 'interrupted' : 'error';
  if (o.json) {
    o.stdout(JSON.stringify({ status, images, error, interrupted: interrupted ? last[1] : undefined }) + '\n');
  } else {
    for (const p of images) o.stdout(p + '\n');
  }
  if (error) {
    o.stderr.write(`error in node ${error.node_id} (${error.node_type}): ${error.exception_type}: ${error.exception_message}\n`);
    for (const line of error.traceback.slice(1, 6)) o.stderr.write(`  ${line.trim()}\n`);
    return 1;
  }
  if (interrupted) {
    o.stderr.write('interrupted\n');
    return 130;
  }
  return status === 'success' ? 0 : 1;
}

/** Nodes that will run: the outputs and their ancestors. */
function countNodes(prompt: ApiPrompt, outputs: string[]): number {
  const seen = new Set<string>();
  const stack = [...outputs];
  while (stack.length) {
    const id = stack.pop()!;
    if (seen.has(id) || !prompt[id]) continue;
    seen.add(id);
    for (const v of Object.values(prompt[id].inputs ?? {})) {
      if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string') stack.push(v[0]);
    }
  }
  return seen.size;
}
