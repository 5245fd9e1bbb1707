// openid-client 6 against a freshly started medgate: discovery, the authorization code flow with
// S256 PKCE through medgate's HTML sign-in page, ID-token signature checks against the JWKS,
// refresh, and client credentials with client_secret_basic and client_secret_post.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as oidc from 'openid-client';

import {
  createClientApplication,
  createProjectAsAdmin,
  decodeJwtPayload,
  request,
} from './helpers/medgate-api.mjs';
import { startServer } from './helpers/server.mjs';
import { signInThroughForm } from './helpers/sign-in-form.mjs';

// The sign-in flow stops at the redirect to this URI, so nothing listens there.
const REDIRECT_URI = 'http://127.0.0.1/openid-client-callback';

let server;
let project;
let application;
let codeGrantTokens;

before(async () => {
  server = await startServer();
  // A project of its own, because Medplum drops the refresh token of logins into a super-admin
  // project, as the bootstrap project is.
  project = await createProjectAsAdmin(server, 'E2E OpenID project');
  application = await createClientApplication(server, project.tokens.access_token, {
    name: 'E2E openid-client',
    redirectUris: [REDIRECT_URI],
  });
}, { timeout: 60_000 });

after(async () => {
  await server?.stop();
});

/** Discovers the server from its base URL, with the given client authentication method. */
async function discover(clientAuthentication) {
  return oidc.discovery(new URL(server.baseUrl), application.id, application.secret, clientAuthentication, {
    execute: [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks],
  });
}

test('discovery from base URL', async () => {
  const config = await discover(oidc.ClientSecretBasic(application.secret));
  const metadata = config.serverMetadata();

  assert.equal(metadata.issuer, server.baseUrl);
  assert.equal(metadata.authorization_endpoint, new URL('oauth2/authorize', server.baseUrl).href);
  assert.equal(metadata.token_endpoint, new URL('oauth2/token', server.baseUrl).href);
  assert.equal(metadata.jwks_uri, new URL('.well-known/jwks.json', server.baseUrl).href);
  assert.ok(metadata.code_challenge_methods_supported?.includes('S256'), 'S256 is not advertised');
  assert.ok(metadata.id_token_signing_alg_values_supported?.includes('RS256'), 'RS256 is not advertised');
  assert.equal(config.serverMetadata().supportsPKCE(), true);

  const jwks = await request(server, 'GET', '.well-known/jwks.json');
  assert.equal(jwks.status, 200);
  assert.ok(jwks.json?.keys?.length > 0, `JWKS has no keys: ${jwks.text}`);
  for (const key of jwks.json.keys) {
    assert.ok(key.kid, `JWKS key without kid: ${JSON.stringify(key)}`);
    assert.equal(key.d, undefined, 'JWKS publishes a private key');
  }
});

test('authorization code with PKCE S256', async () => {
  const config = await discover(oidc.ClientSecretBasic(application.secret));
  const codeVerifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();

  const authorizeUrl = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid profile offline_access',
    state,
    nonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
  });

  const { callbackUrl, steps } = await signInThroughForm({
    authorizeUrl: authorizeUrl.href,
    email: server.adminEmail,
    password: server.adminPassword,
    redirectUri: REDIRECT_URI,
    membershipId: project.me.membership.id,
  });
  assert.equal(callbackUrl.searchParams.get('state'), state, `redirect: ${callbackUrl.href}\n${steps.join('\n')}`);
  assert.ok(callbackUrl.searchParams.get('code'), `redirect without code: ${callbackUrl.href}`);

  // openid-client checks state, nonce, iss, aud, exp and the ID token's signature against the JWKS.
  const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
    pkceCodeVerifier: codeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  assert.equal(claims.iss, server.baseUrl);
  assert.equal(claims.nonce, nonce);
  assert.ok(claims.sub, 'ID token has no sub');
  assert.deepEqual([claims.aud].flat(), [application.id]);
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.ok(tokens.refresh_token, 'no refresh_token although offline_access was requested');

  const accessClaims = decodeJwtPayload(tokens.access_token);
  assert.equal(accessClaims.client_id, application.id);
  assert.equal(typeof accessClaims.login_id, 'string');

  const me = await request(server, 'GET', 'auth/me', { token: tokens.access_token });
  assert.equal(me.status, 200, `GET /auth/me: ${me.text}`);
  assert.equal(me.json.profile?.id, project.me.profile.id);
  assert.equal(me.json.project?.id, project.me.project.id);

  // fetchUserInfo rejects a userinfo sub that differs from the ID token's sub.
  const userInfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
  assert.equal(userInfo.sub, claims.sub);

  codeGrantTokens = tokens;
});

test('refresh token grant rotates tokens', async () => {
  assert.ok(codeGrantTokens?.refresh_token, 'authorization code test left no refresh token');
  const config = await discover(oidc.ClientSecretBasic(application.secret));
  const originalSubject = codeGrantTokens.claims().sub;

  const refreshed = await oidc.refreshTokenGrant(config, codeGrantTokens.refresh_token);
  assert.ok(refreshed.access_token, 'refresh response has no access_token');
  assert.notEqual(refreshed.access_token, codeGrantTokens.access_token, 'refresh returned the same access token');
  assert.ok(refreshed.refresh_token, 'refresh response has no refresh_token');
  assert.notEqual(refreshed.refresh_token, codeGrantTokens.refresh_token, 'refresh token did not rotate');
  if (refreshed.id_token) {
    assert.equal(refreshed.claims().sub, originalSubject);
  }

  const me = await request(server, 'GET', 'auth/me', { token: refreshed.access_token });
  assert.equal(me.status, 200, `GET /auth/me with refreshed token: ${me.text}`);
  assert.equal(me.json.profile?.id, project.me.profile.id);
});

for (const [method, clientAuthentication] of [
  ['client_secret_basic', () => oidc.ClientSecretBasic(application.secret)],
  ['client_secret_post', () => oidc.ClientSecretPost(application.secret)],
]) {
  test(`client credentials with ${method}`, async () => {
    const config = await discover(clientAuthentication());

    const tokens = await oidc.clientCredentialsGrant(config, { scope: 'openid' });
    assert.ok(tokens.access_token, 'no access_token');
    assert.equal(tokens.token_type.toLowerCase(), 'bearer');
    assert.equal(decodeJwtPayload(tokens.access_token).client_id, application.id);

    const me = await request(server, 'GET', 'auth/me', { token: tokens.access_token });
    assert.equal(me.status, 200, `GET /auth/me: ${me.text}`);
    assert.equal(me.json.profile?.resourceType, 'ClientApplication');
    assert.equal(me.json.profile?.id, application.id);
    assert.equal(me.json.project?.id, project.me.project.id);
  });
}

test('client credentials reject wrong secret', async () => {
  const config = await oidc.discovery(
    new URL(server.baseUrl),
    application.id,
    undefined,
    oidc.ClientSecretBasic(`${application.secret}x`),
    { execute: [oidc.allowInsecureRequests] },
  );

  let rejection;
  try {
    await oidc.clientCredentialsGrant(config, { scope: 'openid' });
  } catch (err) {
    rejection = err;
  }
  assert.ok(rejection, 'a wrong client secret was accepted');
  assert.equal(rejection.status, 401, `unexpected rejection: ${rejection.message}`);

  // With a WWW-Authenticate challenge (RFC 6749 section 5.2) openid-client throws before it reads
  // the body, so the error code is read from the response here.
  const errorCode = rejection.error ?? (await rejection.response?.clone().json())?.error;
  assert.equal(errorCode, 'invalid_client');
});
