// A Better Auth app as a taskd deployment's frontend would run it: email and password sign-in and
// the JWT plugin with its defaults (EdDSA keys, served at /api/auth/jwks; tokens from
// GET /api/auth/token). Its own tables live in the PostgreSQL database BETTER_AUTH_DATABASE_URL
// names, created here by Better Auth's migrations.
//
// BETTER_AUTH_USER_IDS picks the user ids: "serial" (advanced.database.generateId: "serial",
// integers) or "default" (Better Auth's own random strings). It listens on a free loopback port
// and prints one JSON line, {"url": "http://127.0.0.1:PORT"}, once it serves.
import { createServer } from "node:http";

import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins";
import pg from "pg";

const ID_CHOICES = { serial: { generateId: "serial" }, default: {} };
const idChoice = ID_CHOICES[process.env.BETTER_AUTH_USER_IDS];
if (idChoice === undefined || !process.env.BETTER_AUTH_DATABASE_URL) {
  console.error("set BETTER_AUTH_USER_IDS (serial or default) and BETTER_AUTH_DATABASE_URL");
  process.exit(2);
}

const server = createServer();
await new Promise((listening) => server.listen(0, "127.0.0.1", listening));
const baseURL = `http://127.0.0.1:${server.address().port}`;

const pool = new pg.Pool({ connectionString: process.env.BETTER_AUTH_DATABASE_URL, max: 4 });
const auth = betterAuth({
  baseURL,
  secret: process.env.BETTER_AUTH_SECRET,
  database: pool,
  emailAndPassword: { enabled: true },
  plugins: [jwt()],
  advanced: { database: idChoice },
  telemetry: { enabled: false },
});

const { runMigrations } = await getMigrations(auth.options);
await runMigrations();

server.on("request", toNodeHandler(auth));
console.log(JSON.stringify({ url: baseURL }));

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    pool.end().then(() => process.exit(0));
  });
}
