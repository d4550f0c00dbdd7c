// The DOM around the canvas: toolbar (queue, interrupt, files), the overall progress bar, a
// status line and the queue/history panel.
import type { ComfyApi, HistoryEntry, QueueItem } from './api.ts';
import type { WorkflowChoice } from './workflow-list.ts';

export type UiActions = {
  queue: () => void;
  interrupt: () => void;
  save: () => void;
  open: (file: File) => void;
  exportApi: () => void;
  loadDefault: () => void;
  /** A shipped workflow picked in the toolbar, by file name. */
  loadWorkflow: (file: string, label: string) => void;
  clear: () => void;
  openHistory: (entry: HistoryEntry) => void;
};

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

export class EditorUi {
  readonly root: HTMLElement;
  private bar: HTMLElement;
  private barLabel: HTMLElement;
  private status: HTMLElement;
  private runningList: HTMLElement;
  private pendingList: HTMLElement;
  private historyList: HTMLElement;
  private queueCount: HTMLElement;
  private workflowSelect: HTMLSelectElement;

  constructor(
    private readonly api: ComfyApi,
    private readonly actions: UiActions,
  ) {
    this.root = document.getElementById('toolbar') ?? document.body;
    const button = (id: string, label: string, title: string, onClick: () => void) => {
      const b = el('button', { id, title }, label);
      b.addEventListener('click', onClick);
      return b;
    };
    const fileInput = el('input', { type: 'file', accept: '.json,.png,application/json,image/png', id: 'file-input' });
    fileInput.style.display = 'none';
    fileInput.addEventListener('change', () => {
      const f = fileInput.files?.[0];
      if (f) actions.open(f);
      fileInput.value = '';
    });
    this.queueCount = el('span', { id: 'queue-count' }, '0');
    const queueBtn = button('queue-button', 'Queue', 'Queue the graph (Ctrl+Enter)', actions.queue);
    queueBtn.append(' ', this.queueCount);
    this.workflowSelect = el('select', { id: 'workflow-select', title: 'Load a shipped workflow' });
    this.setWorkflows([]);
    this.workflowSelect.addEventListener('change', () => {
      const opt = this.workflowSelect.selectedOptions[0];
      // Back to the placeholder, so picking the same workflow again (after edits) reloads it.
      this.workflowSelect.value = '';
      if (opt?.value) actions.loadWorkflow(opt.value, opt.textContent ?? opt.value);
    });
    this.root.append(
      queueBtn,
      button('interrupt-button', 'Interrupt', 'Stop the running job', actions.interrupt),
      el('span', { class: 'sep' }),
      button('save-button', 'Save', 'Download the workflow (UI format JSON)', actions.save),
      button('load-button', 'Load', 'Open a workflow JSON or a PNG made by this tool', () => fileInput.click()),
      button('export-api-button', 'Export API', 'Download the API-format prompt', actions.exportApi),
      button('default-button', 'Default', 'Load the default workflow', actions.loadDefault),
      this.workflowSelect,
      button('clear-button', 'Clear', 'Remove every node', actions.clear),
      fileInput,
    );
    const progress = el('div', { id: 'overall-progress' });
    this.bar = el('div', { class: 'fill' });
    this.barLabel = el('span', { class: 'label' }, 'idle');
    progress.append(this.bar, this.barLabel);
    this.status = el('div', { id: 'status-line' });
    this.root.append(progress, this.status);

    const panel = document.getElementById('queue-panel') ?? el('div');
    this.runningList = el('ul', { id: 'queue-running' });
    this.pendingList = el('ul', { id: 'queue-pending' });
    this.historyList = el('ul', { id: 'history-list' });
    panel.append(el('h3', {}, 'Running'), this.runningList, el('h3', {}, 'Pending'), this.pendingList, el('h3', {}, 'History'), this.historyList);
  }

  /** Fills the workflow picker; the first entry is a placeholder naming the picker. */
  setWorkflows(choices: WorkflowChoice[]): void {
    const placeholder = el('option', { value: '' }, 'Workflows…');
    placeholder.disabled = true;
    const options = choices.map((c) => {
      const o = el('option', { value: c.file }, c.label);
      if (c.description) o.title = c.description;
      return o;
    });
    this.workflowSelect.replaceChildren(placeholder, ...options);
    this.workflowSelect.value = '';
    this.workflowSelect.disabled = choices.length === 0;
  }

  setOverall(fraction: number | null, label: string): void {
    this.bar.style.width = fraction == null ? '0%' : `${Math.round(fraction * 100)}%`;
    this.barLabel.textContent = fraction == null ? label : `${Math.round(fraction * 100)}% ${label}`;
    this.root.dataset.running = fraction == null ? 'false' : 'true';
  }

  message(text: string, kind: 'info' | 'error'): void {
    this.status.textContent = text;
    this.status.className = kind;
  }

  async refreshQueue(): Promise<void> {
    let queue: { queue_running: QueueItem[]; queue_pending: QueueItem[] };
    let history: Record<string, HistoryEntry>;
    try {
      [queue, history] = await Promise.all([this.api.getQueue(), this.api.getHistory(20)]);
    } catch (err) {
      this.message(`could not read the queue: ${(err as Error).message}`, 'error');
      return;
    }
    this.queueCount.textContent = String(queue.queue_running.length + queue.queue_pending.length);
    const item = (q: QueueItem, running: boolean) => {
      const li = el('li', { 'data-prompt-id': q[1] }, `#${q[0]} ${q[1].slice(0, 8)}`);
      const cancel = el('button', { class: 'cancel', title: running ? 'Interrupt this job' : 'Remove from the queue' }, running ? 'Stop' : 'Cancel');
      cancel.addEventListener('click', async () => {
        try {
          if (running) await this.api.interrupt();
          else await this.api.deleteQueueItems([q[1]]);
        } catch (err) {
          this.message((err as Error).message, 'error');
        }
        void this.refreshQueue();
      });
      li.append(' ', cancel);
      return li;
    };
    this.runningList.replaceChildren(...queue.queue_running.map((q) => item(q, true)));
    this.pendingList.replaceChildren(...[...queue.queue_pending].sort((a, b) => a[0] - b[0]).map((q) => item(q, false)));
    const entries = Object.entries(history).reverse();
    this.historyList.replaceChildren(
      ...entries.map(([id, h]) => {
        const li = el('li', { 'data-prompt-id': id, class: h.status?.status_str ?? '' });
        const images = Object.values(h.outputs ?? {}).flatMap((o) => o.images ?? []);
        const caption = el('span', {}, `${id.slice(0, 8)} ${h.status?.status_str ?? ''}`);
        caption.title = 'Load this workflow';
        caption.addEventListener('click', () => this.actions.openHistory(h));
        li.append(caption);
        for (const img of images.slice(0, 4)) {
          const a = el('a', { href: this.api.viewUrl(img), target: '_blank' });
          a.append(el('img', { src: this.api.viewUrl(img), alt: img.filename }));
          li.append(a);
        }
        return li;
      }),
    );
  }
}
