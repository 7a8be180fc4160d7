// Build the page into dist/: bundle src/main.js (ES modules + npm dependencies) with esbuild,
// concatenate the CSS (ours + highlight.js light/dark themes behind prefers-color-scheme),
// copy index.html with cache-busting ?v=<hash> on the assets. Relative URLs only.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(here, 'src');
const dist = path.join(here, 'dist');
const watch = process.argv.includes('--watch');

const hash = (text) => createHash('sha256').update(text).digest('hex').slice(0, 12);

async function css() {
  const hl = (name) => readFile(path.join(here, 'node_modules/highlight.js/styles', name), 'utf8');
  const ours = await readFile(path.join(src, 'styles.css'), 'utf8');
  const light = await hl('github.css');
  const dark = await hl('github-dark.css');
  const text = `${ours}\n/* highlight.js github (light) */\n@media (prefers-color-scheme: light) {\n${light}\n}\n` +
    `/* highlight.js github-dark */\n@media (prefers-color-scheme: dark) {\n${dark}\n}\n`;
  const out = await esbuild.transform(text, { loader: 'css', minify: !watch });
  return out.code;
}

async function build() {
  const started = Date.now();
  await rm(dist, { recursive: true, force: true });
  await mkdir(dist, { recursive: true });
  const result = await esbuild.build({
    entryPoints: [path.join(src, 'main.js')],
    bundle: true,
    format: 'esm',
    target: ['chrome110', 'firefox115', 'safari16'],
    minify: !watch,
    sourcemap: true,
    legalComments: 'linked',
    outfile: path.join(dist, 'app.js'),
    write: false,
    logLevel: 'warning',
  });
  let jsHash = '';
  for (const file of result.outputFiles) {
    await writeFile(file.path, file.contents);
    if (file.path.endsWith('app.js')) jsHash = hash(file.contents);
  }
  const style = await css();
  await writeFile(path.join(dist, 'app.css'), style);
  await copyFile(path.join(src, 'favicon.svg'), path.join(dist, 'favicon.svg'));
  const html = (await readFile(path.join(src, 'index.html'), 'utf8'))
    .replace('app.js"', `app.js?v=${jsHash}"`)
    .replace('app.css"', `app.css?v=${hash(style)}"`);
  await writeFile(path.join(dist, 'index.html'), html);
  console.log(`built static/dist in ${Date.now() - started} ms`);
}

await build();
if (watch) {
  const { watch: fsWatch } = await import('node:fs');
  let timer = null;
  fsWatch(src, { recursive: true }, () => {
    clearTimeout(timer);
    timer = setTimeout(() => build().catch((e) => console.error(e)), 100);
  });
}
