// @medplum/core as a SMART Backend Services client: reads {"baseUrl", "clientId", "assertion",
// "jobId"} on stdin, logs in with the signed assertion (startJwtAssertionLogin: POST
// [baseUrl]oauth2/token, client_credentials + private_key_jwt), then reads the job and searches.
import { readFileSync } from 'node:fs';
import { MedplumClient } from '@medplum/core';

const { baseUrl, clientId, assertion, jobId } = JSON.parse(readFileSync(0, 'utf8'));
const medplum = new MedplumClient({ baseUrl, clientId, fetch });
await medplum.startJwtAssertionLogin(assertion);
const job = await medplum.readResource('AsyncJob', jobId);
const bundle = await medplum.search('AsyncJob', { _count: '100' });
process.stdout.write(JSON.stringify({
  loggedIn: Boolean(medplum.getAccessToken()),
  read: job.id,
  searched: (bundle.entry ?? []).map((entry) => entry.resource.id),
}));
