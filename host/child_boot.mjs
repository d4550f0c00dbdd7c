// Execution child process bootstrap: the parent forks this plain module (so the child needs no
// loader flags of its own), which registers tsx's loader and imports the TypeScript relay.
import { register } from 'tsx/esm/api';

register();
await import(new URL('./child.ts', import.meta.url).href);
