// Entry point of the editor: node types from /object_info, the canvas, the first graph
// (localStorage, else the server's default workflow, else one built from object_info), queueing,
// live progress, drag and drop, and the `window.app` hooks the browser tests use.
import '@comfyorg/litegraph/style.css';
import './style.css';
import { LGraph, LGraphCanvas, LiteGraph } from '@comfyorg/litegraph';
import { ComfyApi, PromptValidationError, type HistoryEntry, type NodeErrors } from './api.ts';
import { colorForType } from './colors.ts';
import { toApiPrompt } from './convert.ts';
import { ExecutionTracker } from './execution.ts';
import { buildFallbackGraph } from './fallback-graph.ts';
import { NodeStates } from './node-state.ts';
import type { ObjectInfo } from './object-info.ts';
import { registerNodeDefs } from './register.ts';
import { applyControlAfterGenerate } from './seed-control.ts';
import { EditorUi } from './ui.ts';
import { setUploader } from './widgets.ts';
import { workflowChoices } from './workflow-list.ts';
import { downloadJson, isUiWorkflow, loadApiPrompt, loadUiWorkflow, readFromStorage, readWorkflowFile, saveToStorage, type LoadedFile } from './workflow-io.ts';

async function main(): Promise<void> {
  const api = new ComfyApi();
  const states = new NodeStates();
  const objectInfo: ObjectInfo = await api.objectInfo();
  registerNodeDefs(objectInfo, states);
  setUploader((file) => api.uploadImage(file));

  // Colours per socket type: slots and links.
  const types = new Set<string>();
  for (const def of Object.values(objectInfo)) {
    for (const t of def.output ?? []) if (typeof t === 'string') types.add(t);
    for (const section of [def.input?.required, def.input?.optional]) {
      for (const spec of Object.values(section ?? {})) if (typeof spec[0] === 'string') types.add(spec[0]);
    }
  }

  const canvasEl = document.getElementById('graph-canvas') as HTMLCanvasElement;
  const graph = new LGraph();
  const canvas = new LGraphCanvas(canvasEl, graph);
  for (const t of types) {
    const c = colorForType(t);
    canvas.default_connection_color_byType[t] = c;
    LGraphCanvas.link_type_colors[t] = c;
  }
  canvas.allow_searchbox = true;
  canvas.show_info = false;
  // A rectangle the size of the screen drawn in graph space: confusing once the view is zoomed.
  canvas.render_canvas_border = false;
  // The default graph framed in a laptop-sized window lands near 0.5x; keep text readable there.
  canvas.low_quality_zoom_threshold = 0.35;
  LiteGraph.release_link_on_empty_shows_menu = true;
  states.onChange = () => canvas.setDirty(true, true);

  // The canvas follows its container (the toolbar and panel can change its size, not only the window).
  const resize = () => {
    const r = canvasEl.parentElement!.getBoundingClientRect();
    canvasEl.width = Math.floor(r.width);
    canvasEl.height = Math.floor(r.height);
    canvas.setDirty(true, true);
  };
  new ResizeObserver(resize).observe(canvasEl.parentElement!);
  resize();

  const ui = new EditorUi(api, {
    queue: () => void queue(),
    interrupt: () => void api.interrupt().catch((e: Error) => ui.message(e.message, 'error')),
    save: () => downloadJson(graph.serialize(), 'workflow.json'),
    open: (f) => void openFile(f),
    exportApi: () => {
      try {
        downloadJson(toApiPrompt(graph.serialize(), objectInfo), 'workflow_api.json');
      } catch (err) {
        ui.message(`export failed: ${(err as Error).message}`, 'error');
      }
    },
    loadDefault: () => void loadDefault(),
    loadWorkflow: (file, label) => void loadWorkflow(file, label),
    clear: () => {
      graph.clear();
      resetRunState();
    },
    openHistory: (h: HistoryEntry) => {
      const wf = (h.prompt[3] as { extra_pnginfo?: { workflow?: unknown } }).extra_pnginfo?.workflow;
      if (isUiWorkflow(wf)) applyLoaded({ kind: 'ui', workflow: wf }, 'history');
      else ui.message('this history entry carries no UI workflow', 'error');
    },
  });
  const tracker = new ExecutionTracker(api, () => graph, states, {
    onOverall: (f, label) => ui.setOverall(f, label),
    onQueueChanged: () => void ui.refreshQueue(),
    onMessage: (text, kind, promptId) => {
      // A job queued with some outputs refused keeps saying so when it ends.
      const skipped = promptId ? skippedOutputs.get(promptId) : undefined;
      if (skipped) ui.message(`${text}; ${skipped}`, 'error');
      else ui.message(text, kind);
    },
  });
  /** prompt id -> "skipped outputs ..." for jobs queued with part of their outputs refused. */
  const skippedOutputs = new Map<string, string>();

  function resetRunState(): void {
    states.clearErrors();
    states.clearImages();
    for (const n of graph.nodes) n.has_errors = false;
  }

  /** Frames every node (title bars included) in the view, never zooming in past 1:1. */
  function fitView(): void {
    if (!graph.nodes.length) return;
    const title = LiteGraph.NODE_TITLE_HEIGHT;
    let x0 = Infinity,
      y0 = Infinity,
      x1 = -Infinity,
      y1 = -Infinity;
    for (const n of graph.nodes) {
      x0 = Math.min(x0, n.pos[0]);
      y0 = Math.min(y0, n.pos[1] - title);
      x1 = Math.max(x1, n.pos[0] + n.size[0]);
      y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const w = x1 - x0;
    const h = y1 - y0;
    const scale = Math.min(1, (0.95 * canvasEl.width) / w, (0.95 * canvasEl.height) / h);
    canvas.ds.scale = scale;
    // offset is in graph units: the graph point at the canvas origin is -offset.
    canvas.ds.offset = [canvasEl.width / scale / 2 - (x0 + w / 2), canvasEl.height / scale / 2 - (y0 + h / 2)];
    canvas.setDirty(true, true);
  }

  function applyLoaded(loaded: LoadedFile, source: string): void {
    resetRunState();
    const missing = loaded.kind === 'ui' ? loadUiWorkflow(graph, loaded.workflow) : loadApiPrompt(graph, loaded.prompt);
    if (missing.length) ui.message(`${source}: node types not offered by this server: ${missing.join(', ')}`, 'error');
    else ui.message(`loaded ${source}`, 'info');
    fitView();
    saveToStorage(graph);
  }

  async function openFile(file: File): Promise<void> {
    try {
      applyLoaded(await readWorkflowFile(file), file.name);
    } catch (err) {
      ui.message((err as Error).message, 'error');
    }
  }

  /** Replaces the graph with a shipped workflow (Default and the picker); false when `wf` is not a UI workflow. */
  function applyShipped(wf: unknown, label: string): boolean {
    if (!isUiWorkflow(wf)) return false;
    applyLoaded({ kind: 'ui', workflow: wf }, label);
    return true;
  }

  async function loadDefault(): Promise<void> {
    if (!applyShipped(await api.defaultWorkflow(), 'the default workflow')) {
      resetRunState();
      if (!buildFallbackGraph(graph, objectInfo)) ui.message('the server offers no output node to build a graph from', 'error');
      else ui.message('the server has no default workflow; built a graph from its node list', 'info');
      fitView();
      saveToStorage(graph);
    }
  }

  /** A shipped workflow from the picker: the same replacement as Default, minus its fallback graph. */
  async function loadWorkflow(file: string, label = file): Promise<void> {
    let wf: unknown;
    try {
      wf = await api.workflow(file);
    } catch (err) {
      ui.message(`could not load ${label}: ${(err as Error).message}`, 'error');
      return;
    }
    if (!applyShipped(wf, label)) ui.message(`${label} is not a UI workflow`, 'error');
  }

  async function refreshWorkflowList(): Promise<void> {
    try {
      const [files, index] = await Promise.all([api.listWorkflows(), api.templateIndex()]);
      ui.setWorkflows(workflowChoices(files, index));
    } catch (err) {
      ui.setWorkflows([]);
      ui.message(`could not list the shipped workflows: ${(err as Error).message}`, 'error');
    }
  }

  function showNodeErrors(errors: NodeErrors): void {
    for (const [id, e] of Object.entries(errors)) {
      const node = graph.getNodeById(Number(id)) ?? graph.getNodeById(id);
      if (!node) continue;
      node.has_errors = true;
      const inputs = new Map<string, string>();
      for (const err of e.errors) {
        const name = err.extra_info?.input_name;
        if (name) inputs.set(name, `${err.message}${err.details && err.details !== name ? ` (${err.details})` : ''}`);
      }
      const general = e.errors.filter((err) => !err.extra_info?.input_name).map((err) => err.message);
      // Errors tied to an input are listed per input; the headline only carries the others.
      states.setError(id, { message: general.join('; ') || (inputs.size ? '' : (e.errors[0]?.message ?? 'invalid')), inputs });
    }
  }

  async function queue(): Promise<{ promptId: string } | { error: string }> {
    states.clearErrors();
    for (const n of graph.nodes) n.has_errors = false;
    const workflow = graph.serialize();
    let prompt: Record<string, unknown>;
    try {
      prompt = toApiPrompt(workflow, objectInfo);
    } catch (err) {
      ui.message(`cannot convert the graph: ${(err as Error).message}`, 'error');
      return { error: (err as Error).message };
    }
    try {
      const res = await api.queuePrompt(prompt, workflow);
      const pending = tracker.expect(res.prompt_id, Object.keys(prompt));
      applyControlAfterGenerate(graph);
      const failed = Object.keys(res.node_errors ?? {});
      if (failed.length) {
        // Some outputs were valid and run; the others are reported, as in ComfyUI.
        showNodeErrors(res.node_errors);
        const note = `skipped outputs that failed validation (nodes ${failed.join(', ')})`;
        skippedOutputs.set(res.prompt_id, note);
        ui.message(`queued ${res.prompt_id.slice(0, 8)}; ${note}`, 'error');
      } else if (pending) {
        // Not when the job already ran: its own outcome is on the status line by now.
        ui.message(`queued ${res.prompt_id.slice(0, 8)}`, 'info');
      }
      void ui.refreshQueue();
      return { promptId: res.prompt_id };
    } catch (err) {
      if (err instanceof PromptValidationError) {
        showNodeErrors(err.body.node_errors);
        ui.message(err.message, 'error');
      } else {
        ui.message((err as Error).message, 'error');
      }
      canvas.setDirty(true, true);
      return { error: (err as Error).message };
    }
  }

  // Ctrl+Enter queues from anywhere, except while the search box or a dialog owns the keys.
  window.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      void queue();
    } else if (e.key === '.' && e.target === canvasEl) {
      // ComfyUI's shortcut: frame the whole graph.
      fitView();
    }
  });

  const dropZone = canvasEl.parentElement!;
  dropZone.addEventListener('dragover', (e) => {
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
  });
  dropZone.addEventListener('drop', (e) => {
    e.preventDefault();
    const file = e.dataTransfer?.files?.[0];
    if (file) void openFile(file);
  });

  // First graph: the one kept from the last visit, else the default workflow.
  const kept = readFromStorage();
  if (kept) applyLoaded({ kind: 'ui', workflow: kept }, 'the last session');
  else await loadDefault();
  // After the first graph, so a failure stays on the status line instead of being overwritten
  // by its "loaded ..." message.
  void refreshWorkflowList();

  // Persist on change. Serializing once a second is cheap next to drawing and catches every
  // kind of edit (widgets, links, moves) without hooking each of them.
  let lastSaved = JSON.stringify(graph.serialize());
  setInterval(() => {
    const now = JSON.stringify(graph.serialize());
    if (now !== lastSaved) {
      lastSaved = now;
      saveToStorage(graph);
    }
  }, 1000);

  api.connect();
  canvas.draw(true, true);
  void ui.refreshQueue();

  const app = {
    LiteGraph,
    graph,
    canvas,
    api,
    objectInfo,
    states,
    tracker,
    queue,
    loadFile: openFile,
    loadDefault,
    loadWorkflow,
    refreshWorkflowList,
    fitView,
    toApiPrompt: () => toApiPrompt(graph.serialize(), objectInfo),
    nodeErrors: () => states.allErrors(),
    nodeImages: (id: number | string) => states.imagesOf(id),
    /** Canvas-space centre of a node in page (CSS pixel) coordinates, for pointer-driven tests. */
    nodeScreenPos: (id: number | string) => {
      const n = graph.getNodeById(Number(id)) ?? graph.getNodeById(id);
      if (!n) return null;
      const r = canvasEl.getBoundingClientRect();
      const [x, y] = canvas.convertOffsetToCanvas([n.pos[0] + n.size[0] / 2, n.pos[1] + n.size[1] / 2], [0, 0]);
      return { x: r.left + x, y: r.top + y };
    },
    ready: true,
  };
  (window as unknown as { app: typeof app }).app = app;
  document.body.dataset.ready = 'true';
}

main().catch((err: unknown) => {
  console.error(err);
  const box = document.getElementById('fatal') ?? document.body;
  box.textContent = `The editor could not start: ${(err as Error).message}`;
  document.body.dataset.ready = 'error';
});
