// Polls a status URL of the asynchronous request pattern with @medplum/core: reads
// {"baseUrl", "token", "statusUrl"} on stdin; prints {"result": …} (the first answer other
// than 202) or, when the client threw, {"error": …} (the OperationOutcome it threw with).
import { readFileSync } from 'node:fs';
import { MedplumClient } from '@medplum/core';

const input = JSON.parse(readFileSync(0, 'utf8'));
const medplum = new MedplumClient({ baseUrl: input.baseUrl });
medplum.setAccessToken(input.token);
try {
  const result = await medplum.get(input.statusUrl, {
    pollStatusOnAccepted: true,
    pollStatusPeriod: 200,
    cache: 'no-cache',
  });
  process.stdout.write(JSON.stringify({ result }));
} catch (err) {
  process.stdout.write(JSON.stringify({ error: err.outcome ?? String(err) }));
}
