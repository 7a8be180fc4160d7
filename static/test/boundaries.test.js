// The model stays DOM-free: no browser globals, no timers, no imports from outside model/.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const modelDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'model');
const FORBIDDEN = /\b(document|window|sessionStorage|localStorage|navigator|location|requestAnimationFrame|setTimeout|setInterval|fetch|WebSocket|BroadcastChannel)\b/;

const withoutComments = (src) => src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:])\/\/.*$/gm, '$1');

for (const file of readdirSync(modelDir).filter((f) => f.endsWith('.js'))) {
  test(`model/${file} uses no browser API and imports only the model`, () => {
    const code = withoutComments(readFileSync(path.join(modelDir, file), 'utf8'));
    const hit = code.match(FORBIDDEN);
    assert.equal(hit, null, `model/${file} mentions ${hit && hit[0]}`);
    for (const [, from] of code.matchAll(/from\s+'([^']+)'/g)) assert.match(from, /^\.\/[\w-]+\.js$/, `model/${file} imports ${from}`);
  });
}
