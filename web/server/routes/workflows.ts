// Workflow routes: the shipped workflows for the editor (GET /workflows, /workflows/{name},
// /workflows/default.json) and ComfyUI's POST /workflow_to_prompt (UI format -> API format).
import type { AddRoute } from '../app.ts';
import type { ServerState } from '../state.ts';
import { convertUiToApi } from '../../../engine/index.ts';
import { defaultWorkflowUi, listWorkflows, readWorkflow } from '../../../workflows/index.ts';

export function registerWorkflowRoutes(add: AddRoute, state: ServerState): void {
  add('GET', '/workflows', async () => listWorkflows());
  add('GET', '/workflows/default.json', async () => defaultWorkflowUi());
  add('GET', '/workflows/:name', async (req, reply) => {
    const { name } = req.params as { name: string };
    const wf = readWorkflow(name);
    if (wf === undefined) return reply.code(404).send({ error: { type: 'not_found', message: `no shipped workflow ${JSON.stringify(name)}`, details: '', extra_info: {} } });
    return wf;
  });
  add('POST', '/workflow_to_prompt', async (req, reply) => {
    const body = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return reply.code(400).send({ error: 'the body must be a UI workflow JSON object' });
    }
    try {
      const { prompt, warnings } = convertUiToApi(body, state.engine.objectInfo());
      return { prompt, warnings };
    } catch (e) {
      return reply.code(400).send({ error: (e as Error).message });
    }
  });
}
