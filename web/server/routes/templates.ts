// Our shipped workflows (workflows/*.ui.json) as ComfyUI workflow templates, in the two places
// ComfyUI's frontend looks: the core template index it fetches from /templates/index.json (served
// by ComfyUI from the comfyui-workflow-templates package) with each template at
// /templates/<name>.json, and the custom-node template packs of GET /api/workflow_templates
// ({pack: [names]}) with each template at /api/workflow_templates/<pack>/<name>.json.
// On a first start (no settings yet) the frontend opens a blank graph and its template browser,
// which then offers these instead of its SD1.5 examples.
import { z } from 'zod';
import { emptyNotFound, type RoutePlugin } from '../http.ts';
import { param } from '../schema.ts';
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

/** The template pack routes, under both prefixes. */
export const templateRoutes: RoutePlugin = async (app) => {
  app.get('/workflow_templates', async () => ({ [TEMPLATE_PACK]: templateNames() }));
  app.get('/workflow_templates/:pack/:file', { schema: { params: z.object({ pack: param, file: param }) } }, async (req, reply) => {
    const { pack, file } = req.params;
    const wf = pack === TEMPLATE_PACK ? templateFile(file) : undefined;
    return wf === undefined ? emptyNotFound(reply) : wf;
  });
};

/** The core template index and files: not under /api, the frontend fetches them next to its own files. */
export const templateFileRoutes: RoutePlugin = async (app) => {
  app.get('/templates/index.json', async () => templateIndex());
  app.get('/templates/:file', { schema: { params: z.object({ file: param }) } }, async (req, reply) => {
    const wf = templateFile(req.params.file);
    return wf === undefined ? emptyNotFound(reply) : wf;
  });
};
