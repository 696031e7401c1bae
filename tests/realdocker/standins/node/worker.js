'use strict';
// Stand-in for the AIXSSS worker (BullMQ 5): consumes the queue AI_QUEUE_NAME on REDIS_URL with
// WORKER_CONCURRENCY, and on SIGTERM waits for active jobs, then exits 0 (APP.md).
// REDIS_URL goes to ioredis whole, so `rediss://` means TLS, trusting NODE_EXTRA_CA_CERTS.
// (The app at a224b1b passes only host, port and password, so it does not; see APP.md.)
const IORedis = require('ioredis');
const { Worker } = require('bullmq');
const { requireEnv } = require('./lib/env');

requireEnv(['DATABASE_URL', 'API_KEY_ENCRYPTION_KEY', 'REDIS_URL'], { minLength: { API_KEY_ENCRYPTION_KEY: 32 } });
const queueName = process.env.AI_QUEUE_NAME || 'ai-jobs';
const connection = new IORedis(process.env.REDIS_URL, { maxRetriesPerRequest: null });
const worker = new Worker(queueName, async (job) => ({ done: job.id, by: require('node:os').hostname() }), {
  connection,
  concurrency: Number(process.env.WORKER_CONCURRENCY || 4),
});
worker.on('ready', () => console.log(`worker stand-in consuming ${queueName}`));
worker.on('completed', (job) => console.log(`job ${job.id} completed`));
worker.on('error', (err) => console.error(`worker error: ${err.message}`));

async function stop(signal) {
  console.log(`${signal}: closing after active jobs`);
  await worker.close();
  await connection.quit();
  process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
