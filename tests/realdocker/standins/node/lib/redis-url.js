'use strict';
// REDIS_URL as the app reads it (apps/worker/src/worker.ts and apps/api/src/jobs/queue.providers.ts
// parseRedisUrl, app commit a224b1b): host, port and password only, handed to BullMQ. The scheme
// must be redis: or rediss:, but nothing turns TLS on, and the password is WHATWG URL's (not
// percent-decoded). So the app speaks plain text to whatever REDIS_URL names: the program points it
// at the Redis TLS tunnel on loopback.
function parseRedisUrl(url) {
  const parsed = new URL(url);
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new Error(`Unsupported REDIS_URL protocol: ${parsed.protocol}`);
  }
  const password = parsed.password || undefined;
  const port = parsed.port ? Number(parsed.port) : 6379;
  return { host: parsed.hostname, port, password };
}

module.exports = { parseRedisUrl };
