// Runs @medplum/core's bulkExport() against a server: reads {"baseUrl", "token", "types"?,
// "since"?} on stdin; prints {"manifest": …} (what bulkExport returned) or, when it threw,
// {"error": …} (the OperationOutcome it threw with).
import { readFileSync } from 'node:fs';
import { MedplumClient } from '@medplum/core';

const input = JSON.parse(readFileSync(0, 'utf8'));
const medplum = new MedplumClient({ baseUrl: input.baseUrl });
medplum.setAccessToken(input.token);
try {
  // Kicks off POST [base]/$export with Prefer: respond-async, then polls Content-Location
  // until an answer other than 202.
  const manifest = await medplum.bulkExport('', input.types, input.since, {
    pollStatusOnAccepted: true,
    pollStatusPeriod: 200,
  });
  process.stdout.write(JSON.stringify({ manifest }));
} catch (err) {
  process.stdout.write(JSON.stringify({ error: err.outcome ?? String(err) }));
}
