'use strict';
// The checks the app's zod schemas make at start (apps/api/src/config/env.ts,
// apps/worker/src/config/env.ts): a missing or short value stops the process.
function requireEnv(names, { minLength = {} } = {}) {
  const problems = [];
  for (const name of names) {
    const value = process.env[name];
    if (!value) problems.push(`${name} is required`);
    else if (value.length < (minLength[name] || 0)) problems.push(`${name} must be at least ${minLength[name]} characters`);
  }
  if (problems.length) {
    console.error(`invalid environment: ${problems.join('; ')}`);
    process.exit(1);
  }
}

module.exports = { requireEnv };
