// The feature flags the server announces, both at GET /features and in its answer to a WebSocket
// client's `feature_flags` handshake (ws.ts, via state.ts), so neither imports the other's module.
import type { ResolvedOptions } from './options.ts';

export function featureFlags(options: Pick<ResolvedOptions, 'maxUploadBytes'>): Record<string, unknown> {
  return { supports_preview_metadata: true, max_upload_size: options.maxUploadBytes };
}
