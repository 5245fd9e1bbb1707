// Access policies through MedplumClient against a freshly started medgate. A project admin gives
// the patient Alice a membership whose policy limits her to her own Patient and its compartment.
// Alice then sees only her own data, and an admin ClientApplication that acts on her behalf
// (`X-Medplum-On-Behalf-Of`) sees the same data and stamps `meta.onBehalfOf` on its writes.

import './helpers/websocket-stub.mjs';

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { MedplumClient, createReference, getStatus } from '@medplum/core';

import { startServer } from './helpers/server.mjs';

const ON_BEHALF_OF_HEADER = 'X-Medplum-On-Behalf-Of';

// The same two entries as Medplum's "Default Patient Access Policy" has for these types.
// `%patient` is the member's own profile when the membership sets no `patient` parameter.
const PATIENT_POLICY_RESOURCES = [
  { resourceType: 'Patient', criteria: 'Patient?_id=%patient.id' },
  { resourceType: 'Observation', criteria: 'Observation?_compartment=%patient' },
];

let server;
let admin;
let alice;
let bob;
let aliceObservations;
let bobObservation;
let aliceMembership;
let aliceCredentials;
let aliceClient;

before(async () => {
  server = await startServer();
}, { timeout: 60_000 });

after(async () => {
  await server?.stop();
});

function newClient(options = {}) {
  return new MedplumClient({ baseUrl: server.baseUrl, ...options });
}

/**
 * Awaits a MedplumClient call that is expected to fail and returns `{status, outcome}`, the
 * HTTP status derived from its OperationOutcome. Returns `{status: undefined}` when the call
 * succeeds, and rethrows errors that carry no OperationOutcome.
 */
async function captureFailure(promise) {
  try {
    await promise;
  } catch (err) {
    if (!err.outcome) {
      throw err;
    }
    return { status: getStatus(err.outcome), outcome: err.outcome };
  }
  return { status: undefined };
}

function describeFailure(failure) {
  return failure.status === undefined ? 'succeeded' : `returned ${failure.status} ${JSON.stringify(failure.outcome)}`;
}

function sortedIds(resources) {
  return resources.map((resource) => resource.id).sort();
}

function newObservation(patient, text, kilograms) {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { text },
    subject: createReference(patient),
    valueQuantity: { value: kilograms, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
  };
}

test('project admin sets up patient access', async () => {
  admin = newClient();
  const login = await admin.startLogin({
    email: server.adminEmail,
    password: server.adminPassword,
    projectId: 'new',
  });
  assert.equal(typeof login.login, 'string', `startLogin returned ${JSON.stringify(login)}`);
  const created = await admin.startNewProject({ login: login.login, projectName: 'E2E access policy project' });
  assert.equal(typeof created.code, 'string', `startNewProject returned no code: ${JSON.stringify(created)}`);
  await admin.processCode(created.code);
  assert.equal(admin.isProjectAdmin(), true, 'the owner of a new project is not its admin');
  assert.equal(admin.isSuperAdmin(), false, 'a new project is a super-admin project');
  const projectId = admin.getProject()?.id;
  assert.ok(projectId, 'the admin session has no project');

  alice = await admin.createResource({ resourceType: 'Patient', name: [{ given: ['Alice'], family: 'Example' }] });
  bob = await admin.createResource({ resourceType: 'Patient', name: [{ given: ['Bob'], family: 'Example' }] });
  aliceObservations = [
    await admin.createResource(newObservation(alice, 'Body weight', 61)),
    await admin.createResource(newObservation(alice, 'Body weight', 62)),
  ];
  bobObservation = await admin.createResource(newObservation(bob, 'Body weight', 80));

  const policy = await admin.createResource({
    resourceType: 'AccessPolicy',
    name: 'E2E patient access',
    resource: PATIENT_POLICY_RESOURCES,
  });
  assert.ok(policy.id, 'created AccessPolicy has no id');

  // Registration into an existing project is open only while the project has a default patient
  // access policy.
  const project = await admin.patchResource('Project', projectId, [
    { op: 'add', path: '/defaultPatientAccessPolicy', value: createReference(policy) },
  ]);
  assert.equal(project.defaultPatientAccessPolicy?.reference, `AccessPolicy/${policy.id}`);

  aliceCredentials = {
    email: `alice-${randomBytes(4).toString('hex')}@example.com`,
    password: `alice-${randomBytes(12).toString('base64url')}`,
    projectId,
  };
  const registration = await newClient().startNewUser({
    firstName: 'Alice',
    lastName: 'Example',
    email: aliceCredentials.email,
    password: aliceCredentials.password,
    projectId,
  });
  assert.equal(typeof registration.login, 'string', `startNewUser returned ${JSON.stringify(registration)}`);
  assert.equal(registration.code, undefined, 'a registration without a membership returned a code');

  const user = await admin.searchOne('User', { email: aliceCredentials.email });
  assert.ok(
    user?.id,
    `project admin search User?email=${aliceCredentials.email} found nothing; ` +
      'a User registered into the project needs meta.project set to that project',
  );
  assert.equal(user.project?.reference, `Project/${projectId}`, 'the registered User is not scoped to the project');

  aliceMembership = await admin.createResource({
    resourceType: 'ProjectMembership',
    project: { reference: `Project/${projectId}` },
    user: createReference(user),
    profile: createReference(alice),
    accessPolicy: createReference(policy),
  });
  assert.ok(aliceMembership.id, 'created ProjectMembership has no id');
  assert.equal(aliceMembership.profile?.reference, `Patient/${alice.id}`);
  assert.equal(aliceMembership.accessPolicy?.reference, `AccessPolicy/${policy.id}`);
  assert.notEqual(aliceMembership.admin, true, 'the patient membership is an admin membership');
});

test('patient sees only own compartment', async () => {
  assert.ok(aliceMembership, 'the setup test did not create a membership for Alice');
  aliceClient = newClient();

  const login = await aliceClient.startLogin({
    email: aliceCredentials.email,
    password: aliceCredentials.password,
    projectId: aliceCredentials.projectId,
  });
  assert.equal(typeof login.code, 'string', `startLogin returned no code: ${JSON.stringify(login)}`);
  const profile = await aliceClient.processCode(login.code);
  assert.equal(profile.resourceType, 'Patient');
  assert.equal(profile.id, alice.id);
  assert.equal(aliceClient.getProfile()?.resourceType, 'Patient');
  assert.equal(aliceClient.getProfile()?.id, alice.id);
  assert.equal(aliceClient.isProjectAdmin(), false, 'the patient session is a project admin session');

  const observations = await aliceClient.searchResources('Observation');
  assert.deepEqual(sortedIds(observations), sortedIds(aliceObservations), 'Observation search as Alice');

  const patients = await aliceClient.searchResources('Patient');
  assert.deepEqual(sortedIds(patients), [alice.id], 'Patient search as Alice');

  const ownObservation = await aliceClient.readResource('Observation', aliceObservations[0].id);
  assert.equal(ownObservation.id, aliceObservations[0].id);

  const bobPatientRead = await captureFailure(aliceClient.readResource('Patient', bob.id));
  assert.ok(
    bobPatientRead.status === 404 || bobPatientRead.status === 403,
    `reading Bob's Patient as Alice ${describeFailure(bobPatientRead)}`,
  );
  const bobObservationRead = await captureFailure(aliceClient.readResource('Observation', bobObservation.id));
  assert.ok(
    bobObservationRead.status === 404 || bobObservationRead.status === 403,
    `reading Bob's Observation as Alice ${describeFailure(bobObservationRead)}`,
  );
});

test('admin client acts on behalf of patient', async () => {
  assert.ok(aliceClient?.getAccessToken(), 'the patient test did not leave Alice signed in');

  const application = await admin.createResource({
    resourceType: 'ClientApplication',
    name: 'E2E on-behalf-of service',
  });
  assert.ok(application.id, 'created ClientApplication has no id');
  assert.equal(typeof application.secret, 'string', 'create response carries no secret');
  const clientReference = `ClientApplication/${application.id}`;

  const clientMembership = await admin.searchOne('ProjectMembership', { user: clientReference });
  assert.ok(clientMembership?.id, `no ProjectMembership has user ${clientReference}`);

  // Only a client whose membership is an admin membership may act for someone else.
  const beforeAdmin = newClient({ defaultHeaders: { [ON_BEHALF_OF_HEADER]: `Patient/${alice.id}` } });
  beforeAdmin.setBasicAuth(application.id, application.secret);
  const nonAdminSearch = await captureFailure(beforeAdmin.searchResources('Observation'));
  assert.equal(
    nonAdminSearch.status,
    403,
    `on-behalf-of search by a non-admin client ${describeFailure(nonAdminSearch)}`,
  );

  const adminMembership = await admin.updateResource({ ...clientMembership, admin: true });
  assert.equal(adminMembership.admin, true, 'the client membership did not become an admin membership');

  const cases = [
    { label: 'Basic, Patient', authentication: 'basic', onBehalfOf: `Patient/${alice.id}` },
    { label: 'Basic, ProjectMembership', authentication: 'basic', onBehalfOf: `ProjectMembership/${aliceMembership.id}` },
    { label: 'Bearer, Patient', authentication: 'bearer', onBehalfOf: `Patient/${alice.id}` },
  ];
  for (const { label, authentication, onBehalfOf } of cases) {
    const service = newClient({ defaultHeaders: { [ON_BEHALF_OF_HEADER]: onBehalfOf } });
    if (authentication === 'basic') {
      service.setBasicAuth(application.id, application.secret);
    } else {
      await service.startClientLogin(application.id, application.secret);
    }

    const aliceView = sortedIds(await aliceClient.searchResources('Observation'));
    const serviceView = sortedIds(await service.searchResources('Observation'));
    assert.deepEqual(serviceView, aliceView, `${label}: Observation search on behalf of Alice`);

    const patients = await service.searchResources('Patient');
    assert.deepEqual(sortedIds(patients), [alice.id], `${label}: Patient search on behalf of Alice`);

    const bobPatientRead = await captureFailure(service.readResource('Patient', bob.id));
    assert.ok(
      bobPatientRead.status === 404 || bobPatientRead.status === 403,
      `${label}: reading Bob's Patient on behalf of Alice ${describeFailure(bobPatientRead)}`,
    );

    const written = await service.createResource(newObservation(alice, `Body weight (${label})`, 63));
    assert.ok(written.id, `${label}: created Observation has no id`);
    assert.equal(written.meta?.author?.reference, clientReference, `${label}: meta.author of the created Observation`);
    assert.equal(
      written.meta?.onBehalfOf?.reference,
      `Patient/${alice.id}`,
      `${label}: meta.onBehalfOf of the created Observation`,
    );

    const afterWrite = sortedIds(await aliceClient.searchResources('Observation'));
    assert.ok(afterWrite.includes(written.id), `${label}: Alice does not see the Observation written for her`);
  }

  // The policy also applies to writes: an Observation outside Alice's compartment is rejected.
  const service = newClient({ defaultHeaders: { [ON_BEHALF_OF_HEADER]: `Patient/${alice.id}` } });
  service.setBasicAuth(application.id, application.secret);
  const bobWrite = await captureFailure(service.createResource(newObservation(bob, 'Body weight', 81)));
  assert.equal(bobWrite.status, 403, `creating Bob's Observation on behalf of Alice ${describeFailure(bobWrite)}`);
});
