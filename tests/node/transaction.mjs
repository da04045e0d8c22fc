// Submits a Bundle with fhir-kit-client: reads {"baseUrl", "token", "bundle"} on stdin; calls
// transaction() or batch() as the Bundle's type says; prints the response Bundle, or the
// error's status and OperationOutcome.
import { readFileSync } from 'node:fs';
import { Client } from 'fhir-kit-client';

const input = JSON.parse(readFileSync(0, 'utf8'));
const client = new Client({ baseUrl: input.baseUrl, bearerToken: input.token });
try {
  const send = input.bundle.type === 'batch' ? client.batch : client.transaction;
  const response = await send.call(client, { body: input.bundle });
  process.stdout.write(JSON.stringify({ response }));
} catch (error) {
  process.stdout.write(
    JSON.stringify({ status: error.response?.status, outcome: error.response?.data })
  );
}
