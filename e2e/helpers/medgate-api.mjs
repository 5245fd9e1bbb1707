// Raw HTTP calls to medgate's Medplum-compatible API, used to set up users, projects and clients
// for the tests without going through the client under test.

import { createHash, randomBytes } from 'node:crypto';

const REQUEST_TIMEOUT_MS = 10_000;

/** Creates a PKCE verifier and its S256 challenge (RFC 7636). */
export function createPkcePair() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

/**
 * Sends one request to the server and returns `{status, headers, text, json}`.
 * `json` is the parsed body when the response has a JSON content type, else undefined.
 */
export async function request(server, method, path, { token, json, form, headers = {} } = {}) {
  const requestHeaders = { ...headers };
  let body;
  if (json !== undefined) {
    requestHeaders['Content-Type'] = path.startsWith('fhir/') ? 'application/fhir+json' : 'application/json';
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    requestHeaders['Content-Type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  if (token) {
    requestHeaders.Authorization = `Bearer ${token}`;
  }

  const response = await fetch(new URL(path, server.baseUrl), {
    method,
    headers: requestHeaders,
    body,
    redirect: 'manual',
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  const contentType = response.headers.get('content-type') ?? '';
  const parsed = contentType.includes('json') && text ? JSON.parse(text) : undefined;
  return { status: response.status, headers: response.headers, text, json: parsed };
}

/** Sends a request and throws, with the response, unless the status is the expected one. */
export async function requestExpecting(server, expectedStatus, method, path, options) {
  const response = await request(server, method, path, options);
  if (response.status !== expectedStatus) {
    throw new Error(`${method} ${path} returned ${response.status}, expected ${expectedStatus}: ${response.text}`);
  }
  return response;
}

/** Redeems an authorization code at /oauth2/token and returns the token response. */
export async function redeemCode(server, code, codeVerifier, extraParameters = {}) {
  const response = await requestExpecting(server, 200, 'POST', 'oauth2/token', {
    form: { grant_type: 'authorization_code', code, code_verifier: codeVerifier, ...extraParameters },
  });
  return response.json;
}

/**
 * Signs the admin in through `POST /auth/login` with S256 PKCE and redeems the code.
 * Throws when the login needs a membership choice, because the admin is expected to have one.
 */
export async function signInAsAdmin(server) {
  const pkce = createPkcePair();
  const login = await requestExpecting(server, 200, 'POST', 'auth/login', {
    json: {
      email: server.adminEmail,
      password: server.adminPassword,
      scope: 'openid profile',
      codeChallenge: pkce.challenge,
      codeChallengeMethod: 'S256',
    },
  });
  if (!login.json?.code) {
    throw new Error(`POST /auth/login returned no code: ${login.text}`);
  }
  return redeemCode(server, login.json.code, pkce.verifier);
}

/**
 * Creates a new project owned by the admin (`/auth/login` with `projectId: "new"`, then
 * `/auth/newproject`), so the admin gets a second membership that is not a super-admin one.
 * Returns `{tokens, me}`: the redeemed token response and `/auth/me` for the new membership.
 */
export async function createProjectAsAdmin(server, projectName, scope = 'openid profile offline_access') {
  const pkce = createPkcePair();
  const login = await requestExpecting(server, 200, 'POST', 'auth/login', {
    json: {
      email: server.adminEmail,
      password: server.adminPassword,
      projectId: 'new',
      scope,
      codeChallenge: pkce.challenge,
      codeChallengeMethod: 'S256',
    },
  });
  if (!login.json?.login) {
    throw new Error(`POST /auth/login with projectId "new" returned no login: ${login.text}`);
  }

  const newProject = await requestExpecting(server, 200, 'POST', 'auth/newproject', {
    json: { login: login.json.login, projectName },
  });
  if (!newProject.json?.code) {
    throw new Error(`POST /auth/newproject returned no code: ${newProject.text}`);
  }

  const tokens = await redeemCode(server, newProject.json.code, pkce.verifier);
  const me = await getMe(server, tokens.access_token);
  return { tokens, me };
}

/** Returns the `GET /auth/me` body for an access token. */
export async function getMe(server, accessToken) {
  const response = await requestExpecting(server, 200, 'GET', 'auth/me', { token: accessToken });
  return response.json;
}

/**
 * Creates a ClientApplication in the project of the access token and returns the created resource,
 * whose `secret` appears in this response only.
 */
export async function createClientApplication(server, accessToken, { name, redirectUris, pkceOptional }) {
  const resource = { resourceType: 'ClientApplication', name, redirectUris };
  if (pkceOptional !== undefined) {
    resource.pkceOptional = pkceOptional;
  }
  const response = await requestExpecting(server, 201, 'POST', 'fhir/R4/ClientApplication', {
    token: accessToken,
    json: resource,
  });
  if (!response.json?.id || !response.json?.secret) {
    throw new Error(`POST /fhir/R4/ClientApplication returned no id or secret: ${response.text}`);
  }
  return response.json;
}

/** Decodes the payload of a JWT without checking its signature. */
export function decodeJwtPayload(jwt) {
  const [, payload] = jwt.split('.');
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
}
