#!/usr/bin/env node
// In a source checkout run the TypeScript directly (Node 24 strips types), so `npx flashsale`
// never runs a stale build; an installed package (under node_modules) runs the compiled dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const source = new URL('../controller/cli.ts', import.meta.url);
const fromSource = existsSync(fileURLToPath(source)) && !fileURLToPath(source).includes('/node_modules/');
const { main } = await import(fromSource ? source.href : new URL('../dist/controller/cli.js', import.meta.url).href);
await main(process.argv.slice(2));
