// The shipped workflows, for the server to hand to the editor (`GET /workflows/default.json`
// answers `defaultWorkflowUi()`) and for tools that list them.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const WORKFLOWS_DIR = path.dirname(fileURLToPath(import.meta.url));
export const DEFAULT_WORKFLOW_UI = path.join(WORKFLOWS_DIR, 'sana_default.ui.json');
export const DEFAULT_WORKFLOW_API = path.join(WORKFLOWS_DIR, 'sana_default.api.json');

/** The default graph in the litegraph UI format (what the editor loads on start). */
export function defaultWorkflowUi(): unknown {
  return JSON.parse(fs.readFileSync(DEFAULT_WORKFLOW_UI, 'utf8'));
}

/** The default graph in the API format (what `sana-graph run` and POST /prompt take). */
export function defaultWorkflowApi(): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(DEFAULT_WORKFLOW_API, 'utf8')) as Record<string, unknown>;
}

/** Shipped workflow files (`*.api.json` / `*.ui.json`), by file name. */
export function listWorkflows(): string[] {
  return fs.readdirSync(WORKFLOWS_DIR).filter((f) => f.endsWith('.api.json') || f.endsWith('.ui.json')).sort();
}

/** A shipped workflow by file name; undefined for names that are not shipped files. */
export function readWorkflow(name: string): unknown | undefined {
  if (!listWorkflows().includes(name)) return undefined;
  return JSON.parse(fs.readFileSync(path.join(WORKFLOWS_DIR, name), 'utf8'));
}
