// Validates asyncapi.yaml with the official AsyncAPI parser: any diagnostic
// of severity error fails (exit status 1). Warnings are printed. Run by
// `make lint-docs` after `npm ci --prefix docs`; works offline once
// installed (the document has no external references).
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const path = fileURLToPath(new URL('./asyncapi.yaml', import.meta.url));
const source = await readFile(path, 'utf8');
const { document, diagnostics } = await new Parser().parse(source, { source: path });

const names = { [DiagnosticSeverity.Error]: 'error', [DiagnosticSeverity.Warning]: 'warning', [DiagnosticSeverity.Information]: 'info', [DiagnosticSeverity.Hint]: 'hint' };
let errors = 0;
for (const d of diagnostics) {
  if (d.severity === DiagnosticSeverity.Error) errors++;
  const line = d.range ? d.range.start.line + 1 : '?';
  console.log(`${names[d.severity] ?? d.severity}: ${path}:${line}: ${d.code}: ${d.message} (at ${d.path.join('.')})`);
}
if (errors > 0 || document === undefined) {
  console.error(`asyncapi.yaml: ${errors} error(s)`);
  process.exit(1);
}
console.log(`asyncapi.yaml: valid AsyncAPI ${document.version()} (${diagnostics.length} diagnostics, none an error)`);
