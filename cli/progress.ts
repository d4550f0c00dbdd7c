// Progress display for `sana-graph run` on stderr: a redrawn one-line bar on a TTY, plain
// lines otherwise (logs, CI), driven by the engine's events.
import type { EngineEvent } from '../engine/index.ts';

export interface ProgressSink {
  write(s: string): void;
  isTTY: boolean;
  columns?: number;
}

export class ProgressView {
  private total = 0;
  private done = 0;
  private node: { id: string; type: string } | undefined;
  private step: { value: number; max: number } | undefined;
  private lastPlain = 0;
  private lastLine = '';

  constructor(
    private readonly out: ProgressSink,
    private readonly classOf: (nodeId: string) => string,
    /** Nodes this run will execute at most (cached ones are subtracted as they are reported). */
    totalNodes: number,
  ) {
    this.total = totalNodes;
  }

  private render(): string {
    const frac = this.total > 0 ? Math.min(1, (this.done + (this.step ? this.step.value / Math.max(1, this.step.max) : 0)) / this.total) : 0;
    const width = 24;
    const filled = Math.round(frac * width);
    const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
    const node = this.node ? ` ${this.node.type} (#${this.node.id})` : '';
    const step = this.step ? ` ${this.step.value}/${this.step.max}` : '';
    return `[${bar}] ${String(Math.round(frac * 100)).padStart(3)}%${node}${step}`;
  }

  private draw(force = false): void {
    if (this.out.isTTY) {
      const line = this.render().slice(0, Math.max(20, (this.out.columns ?? 80) - 1));
      if (line !== this.lastLine) this.out.write(`\r\x1b[2K${line}`);
      this.lastLine = line;
      return;
    }
    // Plain mode: at most one progress line per second, plus every node start.
    const now = Date.now();
    if (force || now - this.lastPlain >= 1000) {
      this.out.write(this.render() + '\n');
      this.lastPlain = now;
    }
  }

  event(e: EngineEvent): void {
    switch (e.type) {
      case 'execution_cached':
        this.total = Math.max(0, this.total - e.data.nodes.length);
        break;
      case 'executing':
        if (this.node) this.done++;
        this.node = e.data.node === null ? undefined : { id: e.data.node, type: this.classOf(e.data.node) };
        this.step = undefined;
        if (this.node) this.draw(true);
        break;
      case 'progress':
        this.step = { value: e.data.value, max: e.data.max };
        this.draw();
        break;
      default:
        break;
    }
  }

  /** Ends the bar line (TTY) so later output starts on a fresh line. */
  finish(): void {
    if (this.node) this.done++;
    this.node = undefined;
    this.step = undefined;
    if (this.out.isTTY && this.lastLine) this.out.write(`\r\x1b[2K${this.render()}\n`);
  }
}
