// MedplumClient (@medplum/core) against a freshly started medgate: password login with the PKCE
// `plain` method it falls back to under Node.js, client credentials, refresh and sign-out.

import './helpers/websocket-stub.mjs';

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MedplumClient } from '@medplum/core';

import { request } from './helpers/medgate-api.mjs';
import { startServer } from './helpers/server.mjs';

// Longer than any access-token lifetime, so refreshIfExpired() treats the token as expiring.
const FORCE_REFRESH_GRACE_MS = 24 * 60 * 60 * 1000;

let server;
let admin;

before(async () => {
  server = await startServer();
}, { timeout: 60_000 });

after(async () => {
  await server?.stop();
});

function newClient() {
  return new MedplumClient({ baseUrl: server.baseUrl });
}

test('admin signs in with PKCE plain', async () => {
  admin = newClient();

  const login = await admin.startLogin({ email: server.adminEmail, password: server.adminPassword });
  assert.equal(typeof login.login, 'string', `startLogin returned ${JSON.stringify(login)}`);
  assert.equal(typeof login.code, 'string', `startLogin returned no code: ${JSON.stringify(login)}`);

  const profile = await admin.processCode(login.code);
  assert.equal(profile.resourceType, 'Practitioner');
  assert.ok(profile.id, 'profile has no id');
  assert.equal(admin.getProfile()?.id, profile.id);
  assert.equal(admin.isProjectAdmin(), true, 'bootstrap membership is not an admin membership');
  assert.equal(admin.isSuperAdmin(), true, 'bootstrap project is not a super-admin project');
  assert.equal(admin.getActiveLogin()?.profile?.reference, `Practitioner/${profile.id}`);
});

test('client application signs in with client credentials', async () => {
  assert.ok(admin?.getAccessToken(), 'admin sign-in test did not leave a signed-in client');
  const adminProjectId = admin.getProject()?.id;

  const application = await admin.createResource({
    resourceType: 'ClientApplication',
    name: 'E2E MedplumClient service',
    redirectUris: ['http://127.0.0.1/medplum-client-callback'],
  });
  assert.ok(application.id, 'created ClientApplication has no id');
  assert.equal(typeof application.secret, 'string', 'create response carries no secret');
  assert.ok(application.secret.length >= 32, `secret is too short: ${application.secret.length} characters`);

  const service = newClient();
  const profile = await service.startClientLogin(application.id, application.secret);
  assert.equal(profile?.resourceType, 'ClientApplication');
  assert.equal(profile?.id, application.id);
  assert.equal(service.getProfile()?.id, application.id);

  const me = await service.get('auth/me');
  assert.equal(me.profile?.resourceType, 'ClientApplication');
  assert.equal(me.profile?.id, application.id);
  assert.equal(me.project?.id, adminProjectId);
  assert.ok(me.membership?.id, '/auth/me has no membership id');

  const stored = await service.readResource('ClientApplication', application.id);
  assert.equal(stored.id, application.id);
  assert.equal(stored.secret, undefined, 'a read returns the client secret');
});

// The refresh runs in a project the admin creates, not in the bootstrap project, because Medplum
// drops the refresh token of logins into a super-admin project.
test('access token refreshes in new project', async () => {
  const medplum = newClient();

  const login = await medplum.startLogin({
    email: server.adminEmail,
    password: server.adminPassword,
    projectId: 'new',
    scope: 'openid profile offline_access',
  });
  assert.equal(typeof login.login, 'string', `startLogin returned ${JSON.stringify(login)}`);
  assert.equal(login.code, undefined, 'a login for a new project returned a code before the project exists');

  const created = await medplum.startNewProject({ login: login.login, projectName: 'E2E refresh project' });
  assert.equal(typeof created.code, 'string', `startNewProject returned no code: ${JSON.stringify(created)}`);

  const profile = await medplum.processCode(created.code);
  assert.equal(profile.resourceType, 'Practitioner');
  assert.equal(medplum.getProject()?.name, 'E2E refresh project');
  assert.equal(medplum.isProjectAdmin(), true);

  const firstAccessToken = medplum.getAccessToken();
  const firstRefreshToken = medplum.getActiveLogin()?.refreshToken;
  assert.ok(firstRefreshToken, 'token response has no refresh_token although offline_access was requested');

  await medplum.refreshIfExpired(FORCE_REFRESH_GRACE_MS);

  const secondAccessToken = medplum.getAccessToken();
  const secondRefreshToken = medplum.getActiveLogin()?.refreshToken;
  assert.ok(secondAccessToken, 'no access token after the refresh');
  assert.notEqual(secondAccessToken, firstAccessToken, 'the refresh did not issue a new access token');
  assert.ok(secondRefreshToken, 'the refresh response has no refresh_token');
  assert.notEqual(secondRefreshToken, firstRefreshToken, 'the refresh token did not rotate');

  const me = await medplum.get('auth/me');
  assert.equal(me.profile?.id, profile.id);

  const beforeSignOut = await request(server, 'GET', 'auth/me', { token: secondAccessToken });
  assert.equal(beforeSignOut.status, 200, `refreshed token rejected: ${beforeSignOut.text}`);

  await medplum.signOut();
  assert.equal(medplum.getAccessToken(), undefined, 'client still holds a token after signOut');

  for (const [label, token] of [['pre-refresh', firstAccessToken], ['refreshed', secondAccessToken]]) {
    const response = await request(server, 'GET', 'auth/me', { token });
    assert.equal(response.status, 401, `${label} access token after signOut: ${response.status} ${response.text}`);
  }
});

test('admin sign-out revokes access token', async () => {
  assert.ok(admin?.getAccessToken(), 'admin sign-in test did not leave a signed-in client');
  const accessToken = admin.getAccessToken();

  const beforeSignOut = await request(server, 'GET', 'auth/me', { token: accessToken });
  assert.equal(beforeSignOut.status, 200, `token rejected before signOut: ${beforeSignOut.text}`);

  await admin.signOut();
  assert.equal(admin.getAccessToken(), undefined, 'client still holds a token after signOut');

  const afterSignOut = await request(server, 'GET', 'auth/me', { token: accessToken });
  assert.equal(afterSignOut.status, 401, `GET /auth/me after signOut: ${afterSignOut.status} ${afterSignOut.text}`);
});
