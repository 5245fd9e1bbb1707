// Starts a fresh medgate release build for one test file: its own temporary data directory, SQLite
// database, free loopback port and random admin password.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const E2E_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_BINARY = resolve(E2E_DIR, '../target/release/medgate');

const READY_TIMEOUT_MS = 30_000;
const READY_POLL_INTERVAL_MS = 100;
const STOP_TIMEOUT_MS = 5_000;
const OUTPUT_TAIL_CHARS = 8_000;

export const ADMIN_EMAIL = 'admin@example.com';

/**
 * Starts medgate and waits until its discovery document answers 200.
 * The binary is `MEDGATE_BIN`, else `../target/release/medgate` relative to e2e/.
 * Set `MEDGATE_E2E_KEEP=1` to keep the data directory (with `medgate.log`) after the run.
 */
export async function startServer() {
  const binary = process.env.MEDGATE_BIN ? resolve(process.env.MEDGATE_BIN) : DEFAULT_BINARY;
  if (!existsSync(binary)) {
    throw new Error(`medgate binary not found at ${binary}: run 'cargo build --release' or set MEDGATE_BIN`);
  }

  const dataDir = await mkdtemp(join(tmpdir(), 'medgate-e2e-'));
  const port = await findFreePort();
  const baseUrl = `http://127.0.0.1:${port}/`;
  const adminPassword = randomBytes(18).toString('base64url');

  const logPath = join(dataDir, 'medgate.log');
  const log = createWriteStream(logPath);
  let outputTail = '';
  const recordOutput = (chunk) => {
    log.write(chunk);
    outputTail = (outputTail + chunk.toString()).slice(-OUTPUT_TAIL_CHARS);
  };

  const child = spawn(
    binary,
    [
      '--port', String(port),
      '--base-url', baseUrl,
      '--data-dir', dataDir,
      '--database-url', `sqlite://${join(dataDir, 'medgate.db')}`,
    ],
    {
      env: { ...process.env, MEDGATE_ADMIN_EMAIL: ADMIN_EMAIL, MEDGATE_ADMIN_PASSWORD: adminPassword },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout.on('data', recordOutput);
  child.stderr.on('data', recordOutput);

  let exitStatus;
  const exited = new Promise((resolveExit) => {
    child.once('exit', (code, signal) => {
      exitStatus = signal ? `signal ${signal}` : `exit code ${code}`;
      resolveExit();
    });
  });
  // Kills the server if the test process ends without running its teardown.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const server = {
    baseUrl,
    port,
    dataDir,
    adminEmail: ADMIN_EMAIL,
    adminPassword,
    /** Returns the last lines the server printed, for failure messages. */
    output: () => outputTail,
    /** Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its data directory. */
    async stop() {
      process.removeListener('exit', killOnExit);
      if (exitStatus === undefined) {
        child.kill('SIGTERM');
        const stopped = await Promise.race([exited.then(() => true), sleep(STOP_TIMEOUT_MS, false)]);
        if (!stopped) {
          child.kill('SIGKILL');
          await exited;
        }
      }
      await new Promise((resolveClose) => log.end(resolveClose));
      if (process.env.MEDGATE_E2E_KEEP === '1') {
        console.log(`medgate data directory kept at ${dataDir}`);
      } else {
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };

  try {
    await waitUntilReady(baseUrl, () => exitStatus);
  } catch (err) {
    await server.stop();
    throw new Error(`${err.message}\n--- medgate output ---\n${outputTail}`);
  }
  return server;
}

/** Returns a port that was free a moment ago, found by binding port 0 on 127.0.0.1. */
async function findFreePort() {
  const probe = createServer();
  await new Promise((resolveListen, rejectListen) => {
    probe.once('error', rejectListen);
    probe.listen(0, '127.0.0.1', resolveListen);
  });
  const { port } = probe.address();
  await new Promise((resolveClose) => probe.close(resolveClose));
  return port;
}

async function waitUntilReady(baseUrl, getExitStatus) {
  const discoveryUrl = new URL('.well-known/openid-configuration', baseUrl);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = 'no response yet';

  while (Date.now() < deadline) {
    const exitStatus = getExitStatus();
    if (exitStatus !== undefined) {
      throw new Error(`medgate exited before it was ready (${exitStatus})`);
    }
    try {
      const response = await fetch(discoveryUrl, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.status === 200) {
        return;
      }
      lastError = `GET ${discoveryUrl} returned ${response.status}`;
    } catch (err) {
      lastError = `GET ${discoveryUrl} failed: ${err.cause?.code ?? err.message}`;
    }
    await sleep(READY_POLL_INTERVAL_MS);
  }
  throw new Error(`medgate was not ready after ${READY_TIMEOUT_MS} ms: ${lastError}`);
}
