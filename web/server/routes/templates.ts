// Our shipped workflows (workflows/*.ui.json) as ComfyUI workflow templates, in the two places
// ComfyUI's frontend looks: the core template index it fetches from /templates/index.json (served
// by ComfyUI from the comfyui-workflow-templates package) with each template at
// /templates/<name>.json, and the custom-node template packs of GET /api/workflow_templates
// ({pack: [names]}) with each template at /api/workflow_templates/<pack>/<name>.json.
// On a first start (no settings yet) the frontend opens a blank graph and its template browser,
// which then offers these instead of its SD1.5 examples.
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { AddRoute } from '../app.ts';
import type { ServerState } from '../state.ts';
import { listWorkflows, readWorkflow } from '../../../workflows/index.ts';

export const TEMPLATE_PACK = 'sana-graph';

const DESCRIPTIONS: Record<string, string> = {
  sana_default: 'Sana text-to-image with CFG and PAG (Gemma-2 text encoder, Sana DiT, flow DPM-Solver, DC-AE decoder).',
  sana_sprint: 'Sana-Sprint text-to-image in 2 SCM steps (guidance embedded in the model, no negative prompt).',
};

/** Template names: the shipped UI workflows without their `.ui.json`. */
export function templateNames(): string[] {
  return listWorkflows()
    .filter((f) => f.endsWith('.ui.json'))
    .map((f) => f.slice(0, -'.ui.json'.length));
}

function title(name: string): string {
  const words = name.split(/[_-]+/).filter(Boolean);
  return words.map((w, i) => (i === 0 ? w.charAt(0).toUpperCase() + w.slice(1) : w)).join(' ');
}

/** The core index in ComfyUI's format: categories (moduleName "default") of template infos. */
export function templateIndex(): unknown[] {
  return [
    {
      moduleName: 'default',
      title: 'Sana',
      type: 'image',
      category: 'GENERATION TYPE',
      templates: templateNames().map((name) => ({
        name,
        title: title(name),
        description: DESCRIPTIONS[name] ?? `${title(name)} (shipped with sana-graph)`,
        mediaType: 'image',
        mediaSubtype: 'png',
        tags: ['Text to Image'],
        models: ['Sana'],
      })),
    },
  ];
}

/** `<name>.json` for a shipped template, else undefined. */
function templateFile(file: string): unknown | undefined {
  if (!file.endsWith('.json')) return undefined;
  const name = file.slice(0, -'.json'.length);
  return templateNames().includes(name) ? readWorkflow(`${name}.ui.json`) : undefined;
}

// ComfyUI answers unknown template files from its static routes with an empty 404; the frontend
// only looks at the status (a localized index falls back to English, a thumbnail shows none).
const notFound = (reply: FastifyReply) => reply.code(404).header('content-type', 'text/plain; charset=utf-8').send('');

export function registerTemplateRoutes(app: FastifyInstance, add: AddRoute, _state: ServerState): void {
  add('GET', '/workflow_templates', async () => ({ [TEMPLATE_PACK]: templateNames() }));
  add('GET', '/workflow_templates/:pack/:file', async (req, reply) => {
    const { pack, file } = req.params as { pack: string; file: string };
    const wf = pack === TEMPLATE_PACK ? templateFile(file) : undefined;
    return wf === undefined ? notFound(reply) : wf;
  });
  // Not under /api: the frontend fetches these as files next to its own.
  app.get('/templates/index.json', async () => templateIndex());
  app.get('/templates/:file', async (req, reply) => {
    const wf = templateFile((req.params as { file: string }).file);
    return wf === undefined ? notFound(reply) : wf;
  });
}
