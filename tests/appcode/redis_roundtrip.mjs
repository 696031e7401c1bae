// One job through Redis with the application's own connection code, producer and consumer.
// Usage: node redis_roundtrip.mjs <built app root> <timeout ms>
// stdin: {"api": <api env>, "worker": <worker env>} (REDIS_URL, AI_QUEUE_NAME, WORKER_CONCURRENCY)
// stdout: {"ok": true, "result": <the job's return value>, ...} or {"ok": false, "reason": ...},
// with the connection errors the app's clients reported either way.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [app, timeoutMs] = [process.argv[2], Number(process.argv[3])];
const env = JSON.parse(readFileSync(0, 'utf8'));
const errors = new Set();
const report = (outcome) => {
  process.stdout.write(JSON.stringify({ ...outcome, errors: [...errors] }));
  process.exit(0); // the clients would reconnect forever: end here
};
setTimeout(() => report({ ok: false, reason: `no result within ${timeoutMs} ms` }), timeoutMs);
const noteErrors = (client) => client.on('error', (e) => errors.add(e.code ?? e.message));

// Producer: the api's own providers (apps/api/src/jobs/queue.providers.ts, compiled), given
// what Nest's ConfigService.get returns for these keys: the app's Queue and QueueEvents, on
// the connection its own parseRedisUrl derives from REDIS_URL.
const config = { get: (key) => env.api[key] };
const { jobsProviders } = await import(pathToFileURL(join(app, 'apps/api/dist/jobs/queue.providers.js')).href);
const queue = noteErrors(jobsProviders[0].useFactory(config));
const events = noteErrors(jobsProviders[1].useFactory(config));

// Consumer: the worker builds `new Worker(env.AI_QUEUE_NAME, processor, { connection,
// concurrency })` with `connection = parseRedisUrl(env.REDIS_URL)` (apps/worker/src/worker.ts,
// main()). That parseRedisUrl is private to the module, whose import would start the whole
// worker (Prisma included), so its compiled text is taken from apps/worker/dist/worker.js and
// evaluated unchanged: the options are exactly what the worker passes to BullMQ.
const workerJs = readFileSync(join(app, 'apps/worker/dist/worker.js'), 'utf8');
const source = workerJs.match(/^function parseRedisUrl\(url\) \{\n[\s\S]*?\n\}\n/m);
if (!source) throw new Error('no parseRedisUrl in apps/worker/dist/worker.js');
const parseRedisUrl = new Function(`${source[0]}\nreturn parseRedisUrl;`)();
const connection = parseRedisUrl(env.worker.REDIS_URL);
// bullmq as the worker resolves it (apps/worker/node_modules).
const fromWorker = createRequire(join(app, 'apps/worker/package.json'));
const { Worker } = await import(pathToFileURL(fromWorker.resolve('bullmq')).href);
const nonce = `probe-${process.pid}-${Date.now()}`;
noteErrors(
  new Worker(env.worker.AI_QUEUE_NAME, async (job) => ({ echoed: job.data.nonce, by: 'app-worker-connection' }), {
    connection,
    concurrency: Number(env.worker.WORKER_CONCURRENCY ?? 4),
  }),
);

try {
  await events.waitUntilReady();
  const job = await queue.add('appcode-probe', { nonce });
  const result = await job.waitUntilFinished(events, timeoutMs);
  report({
    ok: result?.echoed === nonce,
    result,
    nonce,
    worker_connection: { host: connection.host, port: connection.port, password: Boolean(connection.password) },
  });
} catch (e) {
  report({ ok: false, reason: String(e?.message ?? e) });
}
