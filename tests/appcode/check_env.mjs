// Parse an env with the application's own zod schema, as the app does at start-up
// (apps/api/src/app.module.ts: `validate: (env) => EnvSchema.parse(env)`;
// apps/worker/src/worker.ts: `EnvSchema.parse(process.env)`).
// Usage: node check_env.mjs <compiled config/env.js>; the env as a JSON object on stdin.
// Prints {"ok": true, "data": <parsed>} or {"ok": false, "issues": <zod issues>}.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const { EnvSchema } = await import(pathToFileURL(process.argv[2]).href);
if (!EnvSchema || typeof EnvSchema.safeParse !== 'function') {
  throw new Error(`${process.argv[2]} exports no zod EnvSchema`);
}
const result = EnvSchema.safeParse(JSON.parse(readFileSync(0, 'utf8')));
process.stdout.write(
  JSON.stringify(result.success ? { ok: true, data: result.data } : { ok: false, issues: result.error.issues }),
);
