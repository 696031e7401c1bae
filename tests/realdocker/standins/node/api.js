'use strict';
// Stand-in for the AIXSSS api (NestJS on Fastify, global prefix /api): the same environment
// (APP.md), GET /api/health answering {"ok": true} once PostgreSQL answers a query through
// DATABASE_URL, with the container's hostname and an id drawn at start, so a test can tell which
// process answered (a container that joins another's network namespace shares its hostname).
// /api/stand-in/slow?ms=N answers after N ms. POST /api/stand-in/jobs puts a job on the BullMQ
// queue AI_QUEUE_NAME (for the worker), over the connection the app makes of REDIS_URL
// (lib/redis-url.js: host, port, password, plain text).
const http = require('node:http');
const os = require('node:os');
const { randomUUID } = require('node:crypto');
const { Pool } = require('pg');
const { pgConfig } = require('./lib/prisma-url');
const { requireEnv } = require('./lib/env');
const { parseRedisUrl } = require('./lib/redis-url');

requireEnv(['DATABASE_URL', 'JWT_SECRET', 'API_KEY_ENCRYPTION_KEY', 'REDIS_URL'], {
  minLength: { JWT_SECRET: 32, API_KEY_ENCRYPTION_KEY: 32 },
});
const port = Number(process.env.PORT || 3001);
const queueName = process.env.AI_QUEUE_NAME || 'ai-jobs';
const pool = new Pool(pgConfig(process.env.DATABASE_URL));
const instance = randomUUID();
let queue;

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function health() {
  try {
    await pool.query('SELECT 1');
    return { ok: true, db: 'up', hostname: os.hostname(), instance };
  } catch (err) {
    return { ok: false, db: String(err.message), hostname: os.hostname(), instance };
  }
}

async function enqueue() {
  const { Queue } = require('bullmq');
  queue ??= new Queue(queueName, { connection: parseRedisUrl(process.env.REDIS_URL) });
  const job = await queue.add('stand-in', { at: Date.now() });
  return { id: job.id, queue: queueName };
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/api/health') {
    health().then((body) => send(res, body.ok ? 200 : 503, body));
  } else if (req.url.startsWith('/api/stand-in/slow?ms=')) {
    // A request that takes a while (an AI call the api makes itself, a large upload): the
    // upgrade test has some in flight when the old api is stopped. Any method, POST included.
    const ms = Math.min(Number(req.url.split('=')[1]) || 0, 60000);
    req.resume();
    setTimeout(() => send(res, 200, { slept: ms, instance }), ms);
  } else if (req.method === 'POST' && req.url === '/api/stand-in/jobs') {
    enqueue().then((body) => send(res, 201, body), (err) => send(res, 502, { error: String(err.message) }));
  } else {
    send(res, 404, { message: 'Not Found' });
  }
});
server.listen(port, () => console.log(`api stand-in listening on ${port}`));

// No SIGTERM handler, as the real api: its main.ts never calls enableShutdownHooks, so Node's
// default applies and the process dies at once with its requests in flight (tini forwards the
// signal). A stand-in that closed gracefully would hide what the program must do about that.
