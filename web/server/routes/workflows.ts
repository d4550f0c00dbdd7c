// Workflow routes: the shipped workflows for the editor (GET /workflows, /workflows/{name},
// /workflows/default.json) and ComfyUI's POST /workflow_to_prompt (UI format -> API format).
import { z } from 'zod';
import { sendNotFound } from '../errors.ts';
import type { RoutePlugin } from '../http.ts';
import { invalidAs, param } from '../schema.ts';
import { convertUiToApi } from '../../../engine/index.ts';
import { defaultWorkflowUi, listWorkflows, readWorkflow } from '../../../workflows/index.ts';

// ComfyUI's converter answers {error: "text"}; so do its validation failures.
const uiWorkflow = z.record(z.string(), z.unknown(), { error: 'the body must be a UI workflow JSON object' });

export const workflowRoutes: RoutePlugin = async (app, { state }) => {
  app.get('/workflows', async () => listWorkflows());
  app.get('/workflows/default.json', async () => defaultWorkflowUi());
  app.get('/workflows/:name', { schema: { params: z.object({ name: param }) } }, async (req, reply) => {
    const { name } = req.params;
    const wf = readWorkflow(name);
    if (wf === undefined) return sendNotFound(reply, `no shipped workflow ${JSON.stringify(name)}`);
    return wf;
  });
  app.post(
    '/workflow_to_prompt',
    { schema: { body: uiWorkflow }, errorHandler: invalidAs((reply, issue) => reply.code(400).send({ error: issue.message })) },
    async (req, reply) => {
      try {
        const { prompt, warnings } = convertUiToApi(req.body, state.engine.objectInfo());
        return { prompt, warnings };
      } catch (e) {
        return reply.code(400).send({ error: (e as Error).message });
      }
    },
  );
};
