// A real headless Chromium signs in on medgate's own pages. The authorize URL shows the sign-in
// form, and the admin types the credentials and picks a membership on the chooser page. The browser
// then lands on the client's redirect URI with a code and the original state.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';

import {
  createClientApplication,
  createPkcePair,
  getMe,
  redeemCode,
  requestExpecting,
  signInAsAdmin,
} from './helpers/medgate-api.mjs';
import { startServer } from './helpers/server.mjs';

const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const PAGE_TIMEOUT_MS = 15_000;

let server;
let callbackServer;
let redirectUri;
const callbackRequests = [];
let adminProjectId;
let secondProfile;
let secondMembership;
let application;
let browser;

before(async () => {
  server = await startServer();

  // The client's redirect URI is a local page that returns 200. It records only requests to
  // /callback, because Chromium also requests /favicon.ico.
  callbackServer = createServer((req, res) => {
    if (new URL(req.url, 'http://127.0.0.1').pathname === '/callback') {
      callbackRequests.push(req.url);
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Signed in</title><p>Signed in</p>');
  });
  await new Promise((resolveListen) => callbackServer.listen(0, '127.0.0.1', resolveListen));
  redirectUri = `http://127.0.0.1:${callbackServer.address().port}/callback`;

  // Memberships offered at sign-in are limited to the client's project, so the chooser appears only
  // when the admin has two memberships there. The super admin adds the second one through FHIR.
  const adminTokens = await signInAsAdmin(server);
  const adminMe = await getMe(server, adminTokens.access_token);
  adminProjectId = adminMe.project.id;

  const createdProfile = await requestExpecting(server, 201, 'POST', 'fhir/R4/Practitioner', {
    token: adminTokens.access_token,
    json: { resourceType: 'Practitioner', name: [{ given: ['Second'], family: 'Profile' }] },
  });
  secondProfile = createdProfile.json;

  const createdMembership = await requestExpecting(server, 201, 'POST', 'fhir/R4/ProjectMembership', {
    token: adminTokens.access_token,
    json: {
      resourceType: 'ProjectMembership',
      project: { reference: `Project/${adminProjectId}` },
      user: adminMe.membership.user,
      profile: { reference: `Practitioner/${secondProfile.id}` },
    },
  });
  secondMembership = createdMembership.json;

  application = await createClientApplication(server, adminTokens.access_token, {
    name: 'E2E browser client',
    redirectUris: [redirectUri],
  });

  browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_ARGS,
    headless: true,
    timeout: 30_000,
  });
}, { timeout: 90_000 });

after(async () => {
  await browser?.close();
  if (callbackServer) {
    callbackServer.closeAllConnections();
    await new Promise((resolveClose) => callbackServer.close(resolveClose));
  }
  await server?.stop();
});

test('browser signs in and chooses membership', async () => {
  const pkce = createPkcePair();
  const state = `state-${Date.now()}`;
  const authorizeUrl = new URL('oauth2/authorize', server.baseUrl);
  authorizeUrl.search = new URLSearchParams({
    response_type: 'code',
    client_id: application.id,
    redirect_uri: redirectUri,
    scope: 'openid profile offline_access',
    state,
    nonce: `nonce-${Date.now()}`,
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
  }).toString();

  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(PAGE_TIMEOUT_MS);
  const isCallback = (url) => url.href.startsWith(redirectUri);

  try {
    const response = await page.goto(authorizeUrl.href);
    assert.equal(response?.status(), 200, `GET ${authorizeUrl.href} returned ${response?.status()}`);

    await page.locator('input[name="email"]').fill(server.adminEmail);
    await page.locator('input[name="password"]').fill(server.adminPassword);
    const membershipChoices = page.locator('[name="membership"]');
    await page.locator('button[type="submit"], input[type="submit"]').first().click();

    await Promise.race([membershipChoices.first().waitFor({ state: 'visible' }), page.waitForURL(isCallback)]);
    assert.ok(!isCallback(new URL(page.url())), `sign-in skipped the membership chooser and went to ${page.url()}`);
    const offered = await membershipChoices.evaluateAll((elements) => elements.map((element) => element.value));
    assert.ok(offered.length >= 2, `chooser offers ${offered.length} memberships: ${offered.join(', ')}`);
    assert.ok(offered.includes(secondMembership.id), `chooser lacks membership ${secondMembership.id}`);

    const choice = page.locator(`[name="membership"][value="${secondMembership.id}"]`);
    const tagName = await choice.evaluate((element) => element.tagName.toLowerCase());
    if (tagName === 'button') {
      await choice.click();
    } else {
      await choice.check();
      await page.locator('button[type="submit"]:not([name="membership"]), input[type="submit"]').first().click();
    }
    await page.waitForURL(isCallback);
  } catch (err) {
    const html = await page.content().catch(() => '(page content unavailable)');
    err.message += `\npage URL: ${page.url()}\npage HTML (start): ${html.slice(0, 2_000)}`;
    throw err;
  } finally {
    await context.close();
  }

  const finalUrl = new URL(callbackRequests.at(-1) ?? '/', redirectUri);
  assert.equal(callbackRequests.length, 1, `redirect URI received ${callbackRequests.length} requests`);
  assert.equal(finalUrl.searchParams.get('state'), state);
  const code = finalUrl.searchParams.get('code');
  assert.ok(code, `redirect without code: ${finalUrl.href}`);
  assert.equal(finalUrl.searchParams.get('error'), null);

  const tokens = await redeemCode(server, code, pkce.verifier, {
    client_id: application.id,
    client_secret: application.secret,
    redirect_uri: redirectUri,
  });
  assert.ok(tokens.access_token, 'token response has no access_token');
  assert.equal(tokens.project?.reference, `Project/${adminProjectId}`);
  assert.equal(tokens.profile?.reference, `Practitioner/${secondProfile.id}`);
});
