#!/usr/bin/env node
// The sources are TypeScript run through tsx's loader, so the bin needs no separate build step.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
