'use strict';
// DATABASE_URL in Prisma's dialect (what the program writes and Prisma 6 reads), as pg options:
//   sslmode=require      -> TLS (any other mode: plain; pg has no "prefer")
//   sslaccept=strict     -> rejectUnauthorized: true (Prisma's default, accept_invalid_certs: false)
//   sslcert=<path>       -> ca: the trusted root, as Prisma reads it (not a client certificate)
//   connection_limit     -> the pool's max
//   connect_timeout (s)  -> connectionTimeoutMillis
// The URL's userinfo is percent-decoded, as Prisma decodes it.
const fs = require('node:fs');

function pgConfig(databaseUrl) {
  const url = new URL(databaseUrl);
  if (url.protocol !== 'postgresql:' && url.protocol !== 'postgres:') {
    throw new Error(`DATABASE_URL: unsupported protocol ${url.protocol}`);
  }
  const q = url.searchParams;
  const config = {
    host: url.hostname,
    port: url.port ? Number(url.port) : 5432,
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database: decodeURIComponent(url.pathname.slice(1)),
    ssl: false,
  };
  if (q.get('sslmode') === 'require') {
    config.ssl = { rejectUnauthorized: q.get('sslaccept') === 'strict' };
    if (q.get('sslcert')) config.ssl.ca = fs.readFileSync(q.get('sslcert'), 'utf8');
  }
  if (q.get('connection_limit')) config.max = Number(q.get('connection_limit'));
  if (q.get('connect_timeout')) config.connectionTimeoutMillis = Number(q.get('connect_timeout')) * 1000;
  return config;
}

module.exports = { pgConfig };
