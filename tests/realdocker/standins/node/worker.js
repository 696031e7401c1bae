'use strict';
// Stand-in for the AIXSSS worker (BullMQ 5, apps/worker/src/worker.ts at a224b1b): consumes the
// queue AI_QUEUE_NAME with WORKER_CONCURRENCY over the connection parseRedisUrl(REDIS_URL) gives
// (host, port, password: plain text, see lib/redis-url.js), and on SIGTERM or SIGINT closes the
// worker (waiting for active jobs), then its queue, then exits 0. Idle, that takes a moment, so a
// stop never needs the grace period the program gives it for jobs in flight.
const { Queue, Worker } = require('bullmq');
const { requireEnv } = require('./lib/env');
const { parseRedisUrl } = require('./lib/redis-url');

requireEnv(['DATABASE_URL', 'API_KEY_ENCRYPTION_KEY', 'REDIS_URL'], { minLength: { API_KEY_ENCRYPTION_KEY: 32 } });
const queueName = process.env.AI_QUEUE_NAME || 'ai-jobs';
const concurrency = Number(process.env.WORKER_CONCURRENCY || 4);
const connection = parseRedisUrl(process.env.REDIS_URL);
const dispatchQueue = new Queue(queueName, { connection });
const worker = new Worker(queueName, async (job) => ({ done: job.id, by: require('node:os').hostname() }), {
  connection,
  concurrency,
});
worker.on('ready', () => console.log(`[worker] ready (queue=${queueName}, concurrency=${concurrency})`));
worker.on('completed', (job) => console.log(`job ${job.id} completed`));
worker.on('error', (err) => console.error(`worker error: ${err.message}`));

let stopping;
function shutdown(signal) {
  stopping ??= (async () => {
    const started = Date.now();
    console.log(`[worker] ${signal}: shutting down...`);
    await worker.close();
    await dispatchQueue.close();
    console.log(`[worker] closed in ${Date.now() - started} ms`);
  })();
  return stopping;
}
process.on('SIGINT', () => void shutdown('SIGINT').finally(() => process.exit(0)));
process.on('SIGTERM', () => void shutdown('SIGTERM').finally(() => process.exit(0)));
